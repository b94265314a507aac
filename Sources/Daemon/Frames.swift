// The glue between capture and the model: a captured RGB image is the pixels the Florence-2
// image processor takes (Capture knows nothing of models, Florence2 nothing of cameras).
import Capture
import Florence2

extension RGBImage: RGBPixels {}
