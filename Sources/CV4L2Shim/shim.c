#include "cv4l2shim.h"
int ocv_shim_version(void) { return 1; }
