// Image resampling: Pillow's `Image.resize` on 8-bit RGB, bit-exact (CKernels `ock_resample_*`,
// mirroring libImaging/Resample.c), into uint8 or through a per-byte table into an fp32 tensor.
import CKernels

// MARK: - Filter

/// A resampling filter, numbered as PIL's `Image.Resampling` (the `resample` key of a
/// Hugging Face preprocessor config).
public enum ResampleFilter: Int, Sendable, CaseIterable {
    /// Triangle filter, support 1 (PIL `BILINEAR`).
    case bilinear = 2
    /// Keys cubic with a = -0.5, support 2 (PIL `BICUBIC`).
    case bicubic = 3
}

// MARK: - Resize

/// Pillow-exact resizing of interleaved 8-bit RGB images. Temporaries (filter tables, the
/// intermediate image) come from a scratch arena and are released before returning.
public enum ImageResample {
    /// Arena bytes a resize from `inWidth`×`inHeight` to `outWidth`×`outHeight` takes as scratch.
    public static func scratchBytes(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int, filter: ResampleFilter) -> Int {
        Int(ock_resample_scratch_bytes(Int32(inWidth), Int32(inHeight), Int32(outWidth), Int32(outHeight), Int32(filter.rawValue))) + 64
    }

    /// The kernel variant in use: "avx2" when the CPU has it, else "generic" (for the start-up log).
    public static var variant: String { String(cString: ock_resample_variant()) }

    /// Forces the portable variant (`true`) or returns to the CPU's best (`false`); for debugging
    /// and for tests that compare variants.
    public static func forceGeneric(_ on: Bool) { ock_resample_force_generic(on ? 1 : 0) }

    /// Resizes `rgb` [height, width, 3] into `out` [H, W, 3] fp32, mapping each resized byte `v` of
    /// channel `c` to `table[c·256 + v]` (the caller's rescale and normalisation).
    /// - Throws: `MemoryError.arenaExhausted` when `scratch` is too small.
    public static func resize(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int, into out: Tensor,
                              table: [Float], filter: ResampleFilter, scratch: Arena) throws {
        precondition(out.shape.rank == 3 && out.shape[2] == 3, "resize output must be [H, W, 3], got \(out.shape)")
        precondition(width > 0 && height > 0 && rgb.count >= width * height * 3, "resize input of \(rgb.count) bytes is not \(width)x\(height) RGB")
        precondition(table.count == 3 * 256, "normalisation table must have 768 entries")
        let oh = out.shape[0], ow = out.shape[1]
        let mark = scratch.mark()
        defer { scratch.reset(to: mark) }
        let s = try scratch.allocateBytes(scratchBytes(inWidth: width, inHeight: height, outWidth: ow, outHeight: oh, filter: filter))
        let rc = table.withUnsafeBufferPointer { t in
            ock_resample_rgb8_lut_f32(rgb.baseAddress!, Int32(width), Int32(height), out.base, Int32(ow), Int32(oh),
                                      Int32(filter.rawValue), t.baseAddress!, s)
        }
        precondition(rc == 0, "ock_resample_rgb8_lut_f32 rejected valid sizes")
    }

    /// Resizes `rgb` [height, width, 3] into `out` [outHeight, outWidth, 3] uint8, exactly as Pillow's
    /// `Image.resize((outWidth, outHeight), filter)`. `reference` selects the plain reference kernel.
    /// - Throws: `MemoryError.arenaExhausted` when `scratch` is too small.
    public static func resize(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int,
                              into out: UnsafeMutableBufferPointer<UInt8>, outWidth: Int, outHeight: Int,
                              filter: ResampleFilter, scratch: Arena, reference: Bool = false) throws {
        precondition(width > 0 && height > 0 && rgb.count >= width * height * 3, "resize input of \(rgb.count) bytes is not \(width)x\(height) RGB")
        precondition(outWidth > 0 && outHeight > 0 && out.count >= outWidth * outHeight * 3, "resize output too small")
        let mark = scratch.mark()
        defer { scratch.reset(to: mark) }
        let s = try scratch.allocateBytes(scratchBytes(inWidth: width, inHeight: height, outWidth: outWidth, outHeight: outHeight, filter: filter))
        let f = reference ? ock_resample_rgb8_ref : ock_resample_rgb8
        let rc = f(rgb.baseAddress!, Int32(width), Int32(height), out.baseAddress!, Int32(outWidth), Int32(outHeight), Int32(filter.rawValue), s)
        precondition(rc == 0, "ock_resample_rgb8 rejected valid sizes")
    }
}
