// Image files against Pillow 13 (fixtures and expected pixels from Quantization/goldens_image.py):
// every PNG colour type and depth, JPEG gray/YCbCr/CMYK/progressive/EXIF, PPM/PGM maxvals;
// truncation at every length and seeded byte flips give typed errors, never a crash; JPEG out.
import Foundation
import XCTest
@testable import Capture

private struct FixtureIndex: Decodable {
    struct File: Decodable { let file: String, mode: String, width: Int, height: Int }
    let pillow: String
    let files: [File]
}

final class ImageFileTests: XCTestCase {
    private func index() throws -> FixtureIndex {
        try JSONDecoder().decode(FixtureIndex.self, from: Data(contentsOf: Golden.url("index.json")))
    }

    private func bytes(_ file: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: Golden.url(file))) }

    // MARK: - Against Pillow

    /// Every fixture decodes to exactly Pillow's `convert("RGB")` pixels (max error 0): alpha and
    /// tRNS dropped, palettes expanded, 16-bit high bytes (gray16 clipped), CMYK converted,
    /// PPM maxvals rescaled, Adam7 de-interlaced, EXIF orientation ignored.
    func testDecodesExactlyLikePillow() throws {
        let idx = try index()
        XCTAssertEqual(idx.files.count, 28)
        for f in idx.files {
            let path = try Golden.url(f.file).path
            let image = try ImageFile.read(path: path)
            XCTAssertEqual(image.width, f.width, f.file)
            XCTAssertEqual(image.height, f.height, f.file)
            let name = (f.file as NSString).lastPathComponent
            let want = try Golden.npy("expected/\(name).npy")
            XCTAssertEqual(want.shape, [f.height, f.width, 3], f.file)
            Golden.assertClose(image.bytes.map(Float.init), want.values, tolerance: 0, "\(f.file) (Pillow mode \(f.mode))")
        }
    }

    /// EXIF orientation 6 is not applied: the pixels and size are as stored (Pillow's behaviour
    /// without `ImageOps.exif_transpose`), identical to the same picture saved without EXIF.
    func testEXIFOrientationIsIgnored() throws {
        let a = try ImageFile.decode(bytes("jpeg/exif_orientation6.jpg"), name: "exif")
        let b = try ImageFile.decode(bytes("jpeg/rgb420_q90.jpg"), name: "plain")
        XCTAssertEqual(a.width, 19)
        XCTAssertEqual(a.height, 13)
        XCTAssertEqual(a.bytes, b.bytes)
    }

    func testFormatDetection() throws {
        XCTAssertEqual(ImageFile.format(of: try bytes("jpeg/gray.jpg")), .jpeg)
        XCTAssertEqual(ImageFile.format(of: try bytes("png/rgb8.png")), .png)
        XCTAssertEqual(ImageFile.format(of: try bytes("ppm/p5_15.pgm")), .pnm)
        XCTAssertNil(ImageFile.format(of: Array("GIF89a".utf8)))
        XCTAssertThrowsError(try ImageFile.decode(Array("GIF89a....".utf8), name: "x.gif")) { e in
            XCTAssertEqual(e as? ImageFileError, .unknownFormat(path: "x.gif"))
            XCTAssertTrue("\(e)".contains("x.gif"))
        }
    }

    // MARK: - Damaged files

    /// Every proper prefix of every fixture throws an ImageFileError naming the file: `truncated`,
    /// or `unknownFormat` when the cut falls inside the signature; never a crash, a misleading
    /// "corrupt", or a silently partial image.
    func testTruncationAtEveryLength() throws {
        var kinds: [String: Int] = [:]
        for f in try index().files {
            let data = try bytes(f.file)
            for n in 0..<data.count {
                do {
                    let im = try ImageFile.decode(Array(data[0..<n]), name: f.file)
                    XCTFail("\(f.file) cut to \(n) of \(data.count) bytes decoded as \(im)")
                } catch let e as ImageFileError {
                    XCTAssertTrue("\(e)".hasPrefix(f.file), "\(e)")
                    switch e {
                    case .truncated: kinds["truncated", default: 0] += 1
                    case .unknownFormat: kinds["unknown", default: 0] += 1
                        XCTAssertLessThan(n, 8, "\(f.file) cut to \(n): only a cut signature is unrecognisable")
                    default: XCTFail("\(f.file) cut to \(n): unexpected \(e)")
                    }
                }
            }
        }
        print("truncation outcomes:", kinds.sorted { $0.key < $1.key })
    }

    /// Seeded random byte flips: PNG always fails its CRC or zlib checks; JPEG and PPM either
    /// throw an ImageFileError or decode (damaged entropy data or samples still decode, as in Pillow).
    func testRandomByteFlips() throws {
        var rng = SplitMix64(seed: 20_261_201)
        var decoded = 0, failed = 0
        for f in try index().files {
            let data = try bytes(f.file)
            for _ in 0..<150 {
                var d = data
                let i = rng.below(d.count)
                d[i] ^= UInt8(1 + rng.below(255))
                do {
                    let im = try ImageFile.decode(d, name: f.file, maxPixels: 1 << 16)
                    XCTAssertFalse(f.file.hasPrefix("png/"), "\(f.file): flip at \(i) was not detected")
                    XCTAssertLessThanOrEqual(im.width * im.height, 1 << 16)
                    decoded += 1
                } catch let e as ImageFileError {
                    XCTAssertTrue("\(e)".hasPrefix(f.file), "\(e)")
                    failed += 1
                }
            }
        }
        print("byte flips: \(failed) rejected, \(decoded) decoded")
    }

    /// A PNG chunk CRC error names the chunk (libpng's message) and the file.
    func testPNGCRCErrorIsNamed() throws {
        var d = try bytes("png/rgb8.png")
        d[8 + 8 + 3] ^= 0x01 // inside IHDR's data (width)
        XCTAssertThrowsError(try ImageFile.decode(d, name: "bad.png")) { e in
            guard case let .corrupt(path, format, reason) = e as? ImageFileError else { return XCTFail("\(e)") }
            XCTAssertEqual(path, "bad.png")
            XCTAssertEqual(format, "PNG")
            XCTAssertTrue(reason.contains("CRC"), reason)
        }
    }

    func testPNMHeaderErrors() throws {
        func err(_ s: [UInt8]) -> ImageFileError? {
            do { _ = try ImageFile.decode(s, name: "t.pnm"); return nil } catch { return error as? ImageFileError }
        }
        XCTAssertEqual(err(Array("P3\n1 1\n255\n0 0 0\n".utf8)), .unsupported(path: "t.pnm", format: "PPM/PGM", reason: "P3 (only binary P5 and P6 are decoded)"))
        XCTAssertEqual(err(Array("P6\n1 1\n0\n".utf8) + [0, 0, 0]), .corrupt(path: "t.pnm", format: "PPM/PGM", reason: "maxval 0 is not in 1...65535"))
        XCTAssertEqual(err(Array("P6\n1 x\n255\n".utf8)), .corrupt(path: "t.pnm", format: "PPM/PGM", reason: "height is not a number"))
        XCTAssertEqual(err(Array("P6\n2 1\n255\n".utf8) + [1, 2, 3]), .truncated(path: "t.pnm", format: "PPM/PGM"))
        // A comment inside the header and trailing bytes after the data are fine.
        let im = try ImageFile.decode(Array("P6 #c\n1#d\n 1\n255\n".utf8) + [7, 8, 9, 99], name: "ok.ppm")
        XCTAssertTrue(im[x: 0, y: 0] == (7, 8, 9))
    }

    func testLimitsAndMissingFiles() throws {
        XCTAssertThrowsError(try ImageFile.decode(bytes("png/rgb8.png"), name: "big.png", maxPixels: 100)) { e in
            XCTAssertEqual(e as? ImageFileError, .tooLarge(path: "big.png", width: 19, height: 13, maxPixels: 100))
        }
        XCTAssertThrowsError(try ImageFile.decode(bytes("jpeg/gray.jpg"), name: "big.jpg", maxPixels: 100)) { e in
            XCTAssertEqual(e as? ImageFileError, .tooLarge(path: "big.jpg", width: 19, height: 13, maxPixels: 100))
        }
        XCTAssertThrowsError(try ImageFile.read(path: "/nonexistent/ocellus.jpg")) { e in
            XCTAssertEqual(e as? ImageFileError, .unreadable(path: "/nonexistent/ocellus.jpg", reason: "No such file or directory"))
        }
        XCTAssertThrowsError(try ImageFile.read(path: "/tmp")) { e in
            XCTAssertEqual(e as? ImageFileError, .unreadable(path: "/tmp", reason: "not a regular file"))
        }
    }

    // MARK: - JPEG out

    /// Encode then decode a smooth 64x48 picture: same size and PSNR above 40 dB (4:4:4) and
    /// 38 dB (4:2:0) at quality 95; a written snapshot reads back as the same bytes; an unwritable
    /// path names itself.
    func testJPEGEncodeRoundTrip() throws {
        var px = [UInt8](repeating: 0, count: 64 * 48 * 3)
        for y in 0..<48 {
            for x in 0..<64 {
                px[(y * 64 + x) * 3] = UInt8(x * 4)
                px[(y * 64 + x) * 3 + 1] = UInt8(y * 5)
                px[(y * 64 + x) * 3 + 2] = UInt8((x + y) * 2)
            }
        }
        let src = RGBImage(width: 64, height: 48, bytes: px)
        for full in [true, false] {
            let jpg = try ImageFile.encodeJPEG(src, quality: 95, fullChroma: full)
            XCTAssertEqual(ImageFile.format(of: jpg), .jpeg)
            let back = try ImageFile.decode(jpg, name: "roundtrip")
            XCTAssertEqual(back.width, src.width)
            XCTAssertEqual(back.height, src.height)
            let a = src.bytes, b = back.bytes
            var sum = 0.0
            for i in 0..<a.count {
                let d = Double(a[i]) - Double(b[i])
                sum += d * d
            }
            let mse = sum / Double(a.count)
            let psnr = 10 * log10(255 * 255 / max(mse, 1e-9))
            print("JPEG q95 round trip, full chroma \(full): PSNR \(String(format: "%.1f", psnr)) dB")
            XCTAssertGreaterThan(psnr, full ? 40 : 38)
        }
        let dir = NSTemporaryDirectory() + "ocellus-img-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/snap.jpg"
        try ImageFile.writeJPEG(src, path: path, quality: 90)
        XCTAssertEqual(try ImageFile.read(path: path).bytes, try ImageFile.decode(ImageFile.encodeJPEG(src, quality: 90), name: "m").bytes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"))
        XCTAssertThrowsError(try ImageFile.writeJPEG(src, path: dir + "/no/such/dir.jpg")) { e in
            guard case let .writeFailed(p, reason) = e as? ImageFileError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, dir + "/no/such/dir.jpg")
            XCTAssertEqual(reason, "No such file or directory")
        }
    }

    // MARK: - RGBImage

    func testRGBImageReusesItsBuffer() {
        let im = RGBImage(width: 4, height: 2, bytes: Array(0..<24))
        XCTAssertTrue(im[x: 1, y: 1] == (15, 16, 17))
        XCTAssertFalse(im.reshape(width: 2, height: 2), "shrinking keeps the buffer")
        XCTAssertEqual(im.byteCount, 12)
        XCTAssertEqual(im.capacity, 24)
        XCTAssertTrue(im.reshape(width: 5, height: 5), "growing reallocates")
        XCTAssertEqual(im.capacity, 75)
    }
}
