// Camera pixel formats to RGB: YUYV and NV12 natively (CV4L2Shim's BT.601 integer converters),
// MJPEG through libturbojpeg straight into the reused RGBImage, RGB24 (native or libv4lconvert-
// emulated) by row copy. edge-daemon.md §5.2 says which cameras send which.
import CTurboJPEG
import CV4L2Shim

// MARK: - PixelFormat

/// A V4L2 pixel format (a fourcc). The named ones are those `V4L2Camera` converts to RGB.
public struct PixelFormat: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The fourcc as V4L2 stores it (first character in the low byte).
    public let rawValue: UInt32
    /// The format with fourcc `rawValue`.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Packed 4:2:2 YUV, 2 bytes per pixel (most USB cameras at low resolution).
    public static let yuyv = PixelFormat(rawValue: ocv_V4L2_PIX_FMT_YUYV)
    /// Semi-planar 4:2:0 YUV, 1.5 bytes per pixel (ISPs, CSI cameras).
    public static let nv12 = PixelFormat(rawValue: ocv_V4L2_PIX_FMT_NV12)
    /// Motion JPEG, one JPEG per frame (USB cameras at high resolution).
    public static let mjpeg = PixelFormat(rawValue: ocv_V4L2_PIX_FMT_MJPEG)
    /// Plain JPEG frames (some older cameras); decoded like MJPEG.
    public static let jpeg = PixelFormat(rawValue: ocv_V4L2_PIX_FMT_JPEG)
    /// Packed RGB, 3 bytes per pixel (libv4lconvert emulates it for any camera).
    public static let rgb24 = PixelFormat(rawValue: ocv_V4L2_PIX_FMT_RGB24)

    /// The formats `V4L2Camera` can turn into RGB, cheapest first.
    public static let convertible: [PixelFormat] = [.yuyv, .nv12, .mjpeg, .jpeg, .rgb24]

    /// The four characters, e.g. "YUYV", "MJPG".
    public var description: String {
        String(decoding: (0..<4).map { UInt8(truncatingIfNeeded: rawValue >> (8 * $0)) }.map { (32...126).contains($0) ? $0 : 63 }, as: UTF8.self)
    }

    /// The format with fourcc `code` ("YUYV"); nil unless it is four ASCII characters.
    public init?(fourcc code: String) {
        let b = Array(code.utf8)
        guard b.count == 4 else { return nil }
        rawValue = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }
}

// MARK: - Conversion

/// Why one frame could not be converted (the frame is dropped and counted as corrupt).
struct ConvertError: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// Converts driver buffers into one RGBImage, reusing a libturbojpeg handle. No allocation per
/// frame unless the frame size grows.
final class PixelConverter {
    private var tj: tjhandle?

    deinit { if let tj { tjDestroy(tj) } }

    /// `bytesUsed` bytes at `src` in `format` (`width`×`height`, `stride` bytes per row of the
    /// first plane) into `image`, which is reshaped to the frame's size.
    func convert(_ format: PixelFormat, _ src: UnsafeRawPointer, bytesUsed: Int, width: Int, height: Int, stride: Int, into image: RGBImage) throws(ConvertError) {
        let p = src.assumingMemoryBound(to: UInt8.self)
        switch format {
        case .yuyv:
            guard stride >= width * 2, bytesUsed >= stride * (height - 1) + width * 2 else { throw short(format, bytesUsed, stride * height) }
            image.reshape(width: width, height: height)
            image.withMutableRGBBytes { ocv_yuyv_to_rgb(p, stride, Int32(width), Int32(height), $0.baseAddress) }
        case .nv12:
            let need = stride * height + stride * ((height + 1) / 2)
            guard stride >= width, bytesUsed >= need else { throw short(format, bytesUsed, need) }
            image.reshape(width: width, height: height)
            image.withMutableRGBBytes { ocv_nv12_to_rgb(p, stride, Int32(width), Int32(height), $0.baseAddress) }
        case .rgb24:
            guard stride >= width * 3, bytesUsed >= stride * (height - 1) + width * 3 else { throw short(format, bytesUsed, stride * height) }
            image.reshape(width: width, height: height)
            image.withMutableRGBBytes { d in
                for y in 0..<height { (d.baseAddress! + y * width * 3).update(from: p + y * stride, count: width * 3) }
            }
        case .mjpeg, .jpeg:
            try decodeJPEG(p, bytesUsed, into: image)
        default:
            throw ConvertError(reason: "pixel format \(format) has no converter")
        }
    }

    private func short(_ f: PixelFormat, _ got: Int, _ need: Int) -> ConvertError {
        ConvertError(reason: "\(f) frame holds \(got) bytes, needs \(need)")
    }

    /// A JPEG of `n` bytes; the size comes from its header. A truncated stream that libturbojpeg
    /// can still decode (a warning, not an error) is accepted: the missing rows come out grey.
    private func decodeJPEG(_ p: UnsafePointer<UInt8>, _ n: Int, into image: RGBImage) throws(ConvertError) {
        guard n >= 4, p[0] == 0xFF, p[1] == 0xD8 else { throw ConvertError(reason: "MJPEG frame of \(n) bytes does not start with SOI (FFD8)") }
        if tj == nil { tj = tjInitDecompress() }
        guard let tj else { throw ConvertError(reason: "libturbojpeg did not initialise") }
        var w: Int32 = 0, h: Int32 = 0, sub: Int32 = 0, cs: Int32 = 0
        guard tjDecompressHeader3(tj, p, UInt(n), &w, &h, &sub, &cs) == 0, w > 0, h > 0 else {
            throw ConvertError(reason: "MJPEG header: \(String(cString: tjGetErrorStr2(tj)))")
        }
        image.reshape(width: Int(w), height: Int(h))
        let rc = image.withMutableRGBBytes { tjDecompress2(tj, p, UInt(n), $0.baseAddress, w, 0, h, Int32(TJPF_RGB.rawValue), 0) }
        if rc != 0 && tjGetErrorCode(tj) != Int32(TJERR_WARNING.rawValue) {
            throw ConvertError(reason: "MJPEG decode: \(String(cString: tjGetErrorStr2(tj)))")
        }
    }
}
