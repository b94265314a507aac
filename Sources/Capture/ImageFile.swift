// Image files in and out: JPEG (libturbojpeg 2.1 `tj*` API), PNG (libpng through CPNGShim) and
// binary PPM/PGM, decoded to RGBImage with the semantics of Pillow's `Image.open(f).convert("RGB")`
// (which is how transformers' processor, the reference for Florence-2, loads pictures); JPEG out
// for snapshots.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPNGShim
import CTurboJPEG

/// The C library's read(2) and write(2) (inside `ImageFile` the bare names are ambiguous).
private func sysRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int { read(fd, p, n) }
private func sysWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

// MARK: - Errors

/// Why an image file could not be read or written. Every case names the file (or the name the
/// caller gave the bytes) and what is wrong.
public enum ImageFileError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or read (errno text in `reason`).
    case unreadable(path: String, reason: String)
    /// The bytes start with no signature we decode (JPEG, PNG, PPM/PGM).
    case unknownFormat(path: String)
    /// A valid file of a kind we do not decode (e.g. ASCII PPM, 12-bit JPEG).
    case unsupported(path: String, format: String, reason: String)
    /// The data is damaged (bad header, checksum, compressed stream).
    case corrupt(path: String, format: String, reason: String)
    /// The data ends before the image does.
    case truncated(path: String, format: String)
    /// The image has more pixels than the caller allows (a decompression-bomb guard).
    case tooLarge(path: String, width: Int, height: Int, maxPixels: Int)
    /// Encoding or writing a snapshot failed.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): cannot read image file: \(r)"
        case let .unknownFormat(p): return "\(p): not a JPEG, PNG or PPM/PGM file"
        case let .unsupported(p, f, r): return "\(p): unsupported \(f): \(r)"
        case let .corrupt(p, f, r): return "\(p): corrupt \(f): \(r)"
        case let .truncated(p, f): return "\(p): truncated \(f): the file ends before the image data does"
        case let .tooLarge(p, w, h, m): return "\(p): image is \(w)x\(h) = \(w * h) pixels, more than the limit of \(m)"
        case let .writeFailed(p, r): return "\(p): cannot write image: \(r)"
        }
    }
}

// MARK: - Formats

/// The file formats `ImageFile` decodes.
public enum ImageFormat: String, Sendable {
    /// JPEG (baseline and progressive; gray, YCbCr, CMYK/YCCK).
    case jpeg
    /// PNG (every colour type and bit depth, Adam7).
    case png
    /// Binary PPM (P6) and PGM (P5), maxval 1-65535.
    case pnm
}

// MARK: - Reading

/// Decodes image files into `RGBImage` and encodes JPEG snapshots.
///
/// Semantics (chosen to equal Pillow's `Image.open(f).convert("RGB")`, checked against Pillow
/// 13 in `ImageFileTests`): grayscale is replicated; alpha and tRNS transparency are dropped,
/// not composited; palette images go through their palette; 16-bit PNG samples keep their high
/// byte, except 16-bit gray, which Pillow clips to 255; CMYK JPEGs are read with Adobe
/// (inverted) polarity and converted as Pillow does, `R = (255−C')(255−K')/255` rounded; PPM
/// maxvals other than 255 are rescaled with round-half-even. EXIF orientation is ignored, as Pillow
/// ignores it unless `ImageOps.exif_transpose` is called: pixels come out as stored.
/// Stricter than Pillow: a PNG must end with IEND and every chunk CRC must match; a JPEG must
/// reach its EOI marker. Other libjpeg warnings (damaged entropy data) decode, as in Pillow.
public enum ImageFile {
    /// The default pixel limit (40 M pixels, 120 MB of RGB).
    public static let defaultMaxPixels = 40_000_000

    /// The format the bytes' signature names, or nil.
    public static func format(of bytes: [UInt8]) -> ImageFormat? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8, bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.count >= 2, bytes[0] == UInt8(ascii: "P"), (UInt8(ascii: "1")...UInt8(ascii: "7")).contains(bytes[1]) || bytes[1] == UInt8(ascii: "f") || bytes[1] == UInt8(ascii: "F") {
            return .pnm
        }
        return nil
    }

    /// Reads and decodes the file at `path`.
    /// - Throws: `ImageFileError` naming `path`.
    public static func read(path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        try decode(readBytes(path: path), name: path, maxPixels: maxPixels)
    }

    /// Decodes `bytes` (a whole file); `name` is what errors call it.
    /// - Throws: `ImageFileError` naming `name`.
    public static func decode(_ bytes: [UInt8], name: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        switch format(of: bytes) {
        case .jpeg: return try decodeJPEG(bytes, name: name, maxPixels: maxPixels)
        case .png: return try decodePNG(bytes, name: name, maxPixels: maxPixels)
        case .pnm: return try decodePNM(bytes, name: name, maxPixels: maxPixels)
        case nil: throw ImageFileError.unknownFormat(path: name)
        }
    }

    /// The whole file, read with retries on EINTR.
    static func readBytes(path: String) throws -> [UInt8] {
        func fail() -> ImageFileError { .unreadable(path: path, reason: String(cString: strerror(errno))) }
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw fail() }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail() }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ImageFileError.unreadable(path: path, reason: "not a regular file") }
        var out = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < out.count {
            let n = out.withUnsafeMutableBytes { sysRead(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw fail() }
            if n == 0 { break }
            got += n
        }
        if got < out.count { out.removeSubrange(got...) }
        return out
    }

    static func checkSize(_ w: Int, _ h: Int, _ name: String, _ format: String, _ maxPixels: Int) throws {
        guard w > 0, h > 0 else { throw ImageFileError.corrupt(path: name, format: format, reason: "image size \(w)x\(h)") }
        guard w.multipliedReportingOverflow(by: h).partialValue <= maxPixels, w <= 1 << 24, h <= 1 << 24 else {
            throw ImageFileError.tooLarge(path: name, width: w, height: h, maxPixels: maxPixels)
        }
    }

    // MARK: - JPEG

    static func decodeJPEG(_ bytes: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
        if jpegShape(bytes) == .truncated { throw ImageFileError.truncated(path: name, format: "JPEG") }
        guard let tj = tjInitDecompress() else { throw ImageFileError.corrupt(path: name, format: "JPEG", reason: "libturbojpeg did not initialise") }
        defer { tjDestroy(tj) }
        func message() -> String { String(cString: tjGetErrorStr2(tj)) }
        var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        let rc = bytes.withUnsafeBufferPointer { tjDecompressHeader3(tj, $0.baseAddress, UInt($0.count), &w, &h, &subsamp, &colorspace) }
        guard rc == 0 else {
            let m = message()
            if m.contains("Premature end") || m.contains("ends early") { throw ImageFileError.truncated(path: name, format: "JPEG") }
            throw ImageFileError.corrupt(path: name, format: "JPEG", reason: m)
        }
        try checkSize(Int(w), Int(h), name, "JPEG", maxPixels)
        let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let image = RGBImage(width: Int(w), height: Int(h))
        let flags = Int32(TJFLAG_LIMITSCANS)
        var drc: Int32
        if cmyk {
            var k = [UInt8](repeating: 0, count: Int(w) * Int(h) * 4)
            drc = bytes.withUnsafeBufferPointer { src in
                k.withUnsafeMutableBufferPointer { tjDecompress2(tj, src.baseAddress, UInt(src.count), $0.baseAddress, w, 0, h, Int32(TJPF_CMYK.rawValue), flags) }
            }
            // libjpeg hands back the stored (Adobe-inverted) values c', k'; Pillow un-inverts them
            // and computes R = MULDIV255(255 − C, 255 − K) = MULDIV255(c', k').
            image.withMutableRGBBytes { o in
                for i in 0..<(Int(w) * Int(h)) {
                    let kk = Int(k[4 * i + 3])
                    for c in 0..<3 {
                        let t = Int(k[4 * i + c]) * kk + 128
                        o[3 * i + c] = UInt8(((t >> 8) + t) >> 8)
                    }
                }
            }
        } else {
            drc = bytes.withUnsafeBufferPointer { src in
                image.withMutableRGBBytes { tjDecompress2(tj, src.baseAddress, UInt(src.count), $0.baseAddress, w, 0, h, Int32(TJPF_RGB.rawValue), flags) }
            }
        }
        if drc != 0 && tjGetErrorCode(tj) == Int32(TJERR_FATAL.rawValue) {
            let m = message()
            if m.contains("Premature end") { throw ImageFileError.truncated(path: name, format: "JPEG") }
            throw ImageFileError.corrupt(path: name, format: "JPEG", reason: m)
        }
        return image
    }

    /// What the marker structure says about a JPEG's completeness.
    enum JPEGShape { case whole, truncated, unparsed }

    /// Walks the marker segments to the first start-of-scan, then looks for EOI after it
    /// (entropy-coded data never contains FF D9, so finding it means the scans are complete).
    /// Data ending inside the headers or before EOI is `truncated`; a structure this walk does
    /// not follow is `unparsed` and left to libjpeg to judge.
    static func jpegShape(_ b: [UInt8]) -> JPEGShape {
        var i = 2
        while true {
            guard i + 2 <= b.count else { return .truncated }
            guard b[i] == 0xFF else { return .unparsed }
            let m = b[i + 1]
            if m == 0xFF { i += 1; continue } // fill byte
            if m == 0xDA { break }
            if m == 0xD9 || m == 0xD8 { return .unparsed }
            if (0xD0...0xD7).contains(m) || m == 0x01 { i += 2; continue }
            guard i + 4 <= b.count else { return .truncated }
            i += 2 + (Int(b[i + 2]) << 8 | Int(b[i + 3]))
        }
        var j = b.count - 2
        while j > i {
            if b[j] == 0xFF && b[j + 1] == 0xD9 { return .whole }
            j -= 1
        }
        return .truncated
    }

    // MARK: - PNG

    static func decodePNG(_ bytes: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
        var w: UInt32 = 0, h: UInt32 = 0
        var depth: Int32 = 0, color: Int32 = 0, interlace: Int32 = 0
        var msg = [CChar](repeating: 0, count: 256)
        func fail(_ rc: Int32) -> ImageFileError {
            let m = String(decoding: msg.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if m.contains("truncated") || m.contains("Not enough") { return .truncated(path: name, format: "PNG") }
            return .corrupt(path: name, format: "PNG", reason: rc == OCP_NO_MEMORY ? "out of memory" : m)
        }
        let hrc = bytes.withUnsafeBufferPointer { ocp_png_header($0.baseAddress, $0.count, &w, &h, &depth, &color, &interlace, &msg, msg.count) }
        guard hrc == OCP_OK else { throw fail(hrc) }
        try checkSize(Int(w), Int(h), name, "PNG", maxPixels)
        let image = RGBImage(width: Int(w), height: Int(h))
        let rc = bytes.withUnsafeBufferPointer { src in
            image.withMutableRGBBytes { ocp_png_decode_rgb(src.baseAddress, src.count, $0.baseAddress, $0.count, &msg, msg.count) }
        }
        guard rc == OCP_OK else { throw fail(rc) }
        return image
    }

    // MARK: - PPM / PGM

    /// Binary PNM as Pillow's PpmImagePlugin reads it: tokens separated by whitespace, `#` comments
    /// to the end of the line, one whitespace byte after maxval, then big-endian samples (two
    /// bytes each when maxval > 255).
    static func decodePNM(_ b: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
        let fmt = "PPM/PGM"
        func corrupt(_ why: String) -> ImageFileError { .corrupt(path: name, format: fmt, reason: why) }
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (0x09...0x0D).contains(c) }
        var pos = 2
        guard b.count > 2 else { throw ImageFileError.truncated(path: name, format: fmt) }
        guard isSpace(b[2]) else { throw corrupt("no whitespace after the magic number") }
        let magic = b[1]
        guard magic == UInt8(ascii: "5") || magic == UInt8(ascii: "6") else {
            throw ImageFileError.unsupported(path: name, format: fmt, reason: "P\(UnicodeScalar(magic)) (only binary P5 and P6 are decoded)")
        }
        pos = 3
        func token(_ what: String) throws -> Int {
            var t: [UInt8] = []
            while true {
                guard pos < b.count else {
                    if t.isEmpty { throw ImageFileError.truncated(path: name, format: fmt) }
                    break
                }
                let c = b[pos]
                pos += 1
                if isSpace(c) {
                    if t.isEmpty { continue }
                    break
                }
                if c == UInt8(ascii: "#") {
                    while pos < b.count, b[pos] != 0x0A, b[pos] != 0x0D { pos += 1 }
                    if pos < b.count { pos += 1 }
                    continue
                }
                t.append(c)
                if t.count > 10 { throw corrupt("\(what) token is too long") }
            }
            guard let v = Int(String(decoding: t, as: UTF8.self)), v >= 0 else { throw corrupt("\(what) is not a number") }
            return v
        }
        let w = try token("width"), h = try token("height")
        let maxval = try token("maxval")
        guard maxval > 0 && maxval < 65536 else { throw corrupt("maxval \(maxval) is not in 1...65535") }
        try checkSize(w, h, name, fmt, maxPixels)
        let channels = magic == UInt8(ascii: "6") ? 3 : 1
        let bps = maxval > 255 ? 2 : 1
        let need = w * h * channels * bps
        guard b.count - pos >= need else { throw ImageFileError.truncated(path: name, format: fmt) }
        // Pillow: RGB and 8-bit gray rescale to 255; 16-bit gray becomes mode I (rescaled to 65535
        // unless maxval is 65535), which convert("RGB") clips to 255.
        let grayWide = channels == 1 && maxval > 255
        let outMax = grayWide ? 65535.0 : 255.0
        let raw = maxval == 255 || (grayWide && maxval == 65535)
        func convert(_ v: Int) -> UInt8 {
            if raw { return UInt8(min(v, 255)) }
            let x = min(outMax, (Double(v) / Double(maxval) * outMax).rounded(.toNearestOrEven))
            return UInt8(min(x, 255))
        }
        let table: [UInt8]? = bps == 1 ? (0...255).map(convert) : nil // 16-bit samples convert one by one
        let image = RGBImage(width: w, height: h)
        image.withMutableRGBBytes { o in
            for i in 0..<(w * h) {
                for c in 0..<3 {
                    let s = (i * channels + (channels == 3 ? c : 0)) * bps + pos
                    o[3 * i + c] = table.map { $0[Int(b[s])] } ?? convert(Int(b[s]) << 8 | Int(b[s + 1]))
                }
            }
        }
        return image
    }

    // MARK: - JPEG out

    /// `image` as a baseline JPEG (`quality` 1-100, 4:2:0 chroma subsampling unless `fullChroma`).
    /// - Throws: `ImageFileError.writeFailed` when libturbojpeg refuses.
    public static func encodeJPEG(_ image: RGBImage, quality: Int = 90, fullChroma: Bool = false) throws -> [UInt8] {
        precondition((1...100).contains(quality), "JPEG quality \(quality) is not in 1...100")
        guard image.width > 0, image.height > 0 else { throw ImageFileError.writeFailed(path: "(memory)", reason: "empty image") }
        guard let tj = tjInitCompress() else { throw ImageFileError.writeFailed(path: "(memory)", reason: "libturbojpeg did not initialise") }
        defer { tjDestroy(tj) }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let samp = fullChroma ? Int32(TJSAMP_444.rawValue) : Int32(TJSAMP_420.rawValue)
        let rc = image.withRGBBytes {
            tjCompress2(tj, $0.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(TJPF_RGB.rawValue), &out, &size, samp, Int32(quality), 0)
        }
        defer { if let out { tjFree(out) } }
        guard rc == 0, let out else { throw ImageFileError.writeFailed(path: "(memory)", reason: String(cString: tjGetErrorStr2(tj))) }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    /// Writes `image` as a JPEG file at `path`, atomically (a temporary file renamed into place).
    /// - Throws: `ImageFileError.writeFailed` naming `path`.
    public static func writeJPEG(_ image: RGBImage, path: String, quality: Int = 90) throws {
        let data: [UInt8]
        do { data = try encodeJPEG(image, quality: quality) } catch let ImageFileError.writeFailed(_, reason) {
            throw ImageFileError.writeFailed(path: path, reason: reason)
        }
        func fail() -> ImageFileError { .writeFailed(path: path, reason: String(cString: strerror(errno))) }
        let tmp = path + ".tmp"
        var fd: Int32
        repeat { fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw fail() }
        var done = 0
        while done < data.count {
            let n = data.withUnsafeBytes { sysWrite(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { let e = fail(); close(fd); unlink(tmp); throw e }
            done += n
        }
        guard close(fd) == 0 else { let e = fail(); unlink(tmp); throw e }
        guard rename(tmp, path) == 0 else { let e = fail(); unlink(tmp); throw e }
    }
}
