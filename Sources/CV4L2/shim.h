/* CV4L2: the V4L2 structs (linux/videodev2.h) and libv4l2 / libv4lconvert, as Swift imports them.
 * Macros and variadic calls Swift cannot import come from CV4L2Shim. */
#include <libv4l2.h>
#include <libv4lconvert.h>
#include <linux/videodev2.h>
