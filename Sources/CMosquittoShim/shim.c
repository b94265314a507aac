// CMosquittoShim: constants from <mqtt_protocol.h> for Swift (see include/mosquitto_shim.h).
#include "mosquitto_shim.h"

int ocl_mosquitto_shim_version(void) { return 1; }
