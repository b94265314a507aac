#include "ckernels.h"
int ock_version(void) { return 1; }
