// fp32 ops for Florence-2 on channels-last tensors: torch.nn.LayerNorm, nn.GELU (exact erf),
// torch.softmax, nn.Conv2d (dense and depthwise 3x3), DaViT's window partition/merge, the
// projector's spatial average pool and additions. Thin checked wrappers over CKernels' ock_ops.h.
import CKernels
import COpenBLAS

/// fp32 tensor operations. Activations are channels-last (`[H, W, C]`) or token-major
/// (`[T, C]`); weights keep the PyTorch order in which the model file stores them.
/// Shape mismatches are programmer errors and trap; running out of scratch throws
/// `MemoryError` (the memory plan was too small).
public enum Ops {
    // MARK: - Kernel variant

    /// The instruction-set variant the fp32 op kernels use ("generic", "avx2" or "avx512"),
    /// chosen once from the CPU; log it at start-up.
    public static var kernelVariant: String { String(cString: ock_ops_isa_name(ock_ops_isa())) }

    /// Forces the portable C kernels (`true`) or returns to the automatic choice (`false`);
    /// for debugging. Call it only while no ops run.
    public static func forceGenericKernels(_ on: Bool) { ock_ops_force_isa(on ? 0 : -1) }

    // MARK: - Helpers

    /// The last dimension of `t` (its row length).
    static func lastDim(_ t: Tensor) -> Int {
        precondition(t.shape.rank >= 1, "expected a tensor of rank >= 1, got \(t.shape)")
        return t.shape[t.shape.rank - 1]
    }

    /// Runs `body(lo, hi)` over `rows` rows of `rowCost` elements each, split across the pool
    /// when there is enough work (at least about 32 K elements per chunk).
    static func parallelRows<T: RowsTask>(_ rows: Int, rowCost: Int, _ context: ComputeContext, _ task: T) {
        let minChunk = max(1, 32_768 / max(1, rowCost))
        context.pool.parallelFor(rows, minChunk: minChunk, RowsAdapter(task: task))
    }

    /// Whether the element ranges of `a` and `b` overlap.
    static func overlaps(_ a: Tensor, _ b: Tensor) -> Bool {
        a.base < b.base + b.count && b.base < a.base + a.count
    }

    // MARK: - Layer norm

    /// `out = (x - mean) / sqrt(var + eps) · weight + bias` over the last dimension, like
    /// `torch.nn.LayerNorm(C, eps)`: mean and biased variance in fp32 (two passes).
    /// - Parameters:
    ///   - x: `[rows, C]` (any shape whose last dimension is C, e.g. `[H, W, C]`).
    ///   - weight: `[C]`; bias: `[C]`; eps: 1e-5 in Florence-2.
    ///   - out: same shape as `x`; may be `x` itself.
    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float,
                                 into out: Tensor, context: ComputeContext) {
        let c = lastDim(x)
        precondition(weight.count == c && bias.count == c, "layerNorm: weight \(weight.shape) / bias \(bias.shape) do not match C=\(c) of \(x.shape)")
        precondition(out.count == x.count, "layerNorm: out \(out.shape) does not match x \(x.shape)")
        precondition(out.base == x.base || !overlaps(out, x), "layerNorm: out must be x itself or disjoint from it")
        let rows = c == 0 ? 0 : x.count / c
        let xp = x.base, yp = out.base, wp = weight.base, bp = bias.base
        parallelRows(rows, rowCost: c, context, LayerNormRows(xp: xp, yp: yp, wp: wp, bp: bp, c: c, eps: eps))
    }

    // MARK: - Activations

    /// Exact (erf) GELU in place: `x = 0.5·x·(1 + erf(x/√2))`, as `nn.GELU()` /
    /// `ACT2FN["gelu"]`. Absolute error ≤ 1e-6 for |x| ≤ 10 (in practice the fp32 rounding of the
    /// result); returns x above 10 and -0 below -10; NaN stays NaN.
    /// - Parameter x: any shape, modified in place.
    public static func gelu(_ x: Tensor, context: ComputeContext) {
        let p = x.base
        parallelRows(x.count, rowCost: 1, context, GeluRows(p: p))
    }

    /// Softmax along the last dimension, in place: `x = exp(x - max) / Σ exp(x - max)` per row,
    /// fp32. A row of only -inf becomes NaN, as in PyTorch.
    /// - Parameter x: `[R, N]` (any shape; rows are along the last dimension).
    public static func softmax(_ x: Tensor, context: ComputeContext) {
        let n = lastDim(x)
        let rows = n == 0 ? 0 : x.count / n
        let p = x.base
        parallelRows(rows, rowCost: n * 4, context, SoftmaxRows(p: p, n: n))
    }

    // MARK: - Convolution

    /// The output size of a convolution along one axis: `(n + 2·padding - kernel)/stride + 1`.
    public static func convOutputSize(_ n: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        precondition(kernel >= 1 && stride >= 1 && padding >= 0 && n + 2 * padding >= kernel,
                     "conv: size \(n) too small for kernel \(kernel) with padding \(padding)")
        return (n + 2 * padding - kernel) / stride + 1
    }

    /// Output rows per im2col chunk: at least 256 output pixels (so the GEMM is efficient), and
    /// more while the panel stays within 512 K floats (2 MiB); then evened out so the chunks
    /// are equal (24 rows in chunks of at most 11 become 3 chunks of 8, not 11 + 11 + 2).
    static func conv2dChunkRows(outHeight ho: Int, outWidth wo: Int, patch k: Int) -> Int {
        let minRows = (256 + wo - 1) / wo
        let fitRows = (512 * 1024) / max(1, wo * k)
        let rows = max(1, min(ho, max(minRows, fitRows)))
        let chunks = (ho + rows - 1) / rows
        return max(1, (ho + chunks - 1) / chunks)
    }

    /// Scratch bytes `conv2d` takes from `context.scratch` for an input `[height, width, inChannels]`:
    /// one im2col panel of `chunkRows·Wo` rows by `K = inChannels·kernel²` floats (64-byte aligned),
    /// with `r = max(1, min(Ho, max(⌈256/Wo⌉, ⌊512 Ki / (Wo·K)⌋)))` and
    /// `chunkRows = ⌈Ho / ⌈Ho / r⌉⌉` (equal chunks).
    public static func conv2dScratchBytes(height: Int, width: Int, inChannels: Int, kernel: Int,
                                          stride: Int, padding: Int) -> Int {
        let ho = convOutputSize(height, kernel: kernel, stride: stride, padding: padding)
        let wo = convOutputSize(width, kernel: kernel, stride: stride, padding: padding)
        let k = inChannels * kernel * kernel
        let rows = conv2dChunkRows(outHeight: ho, outWidth: wo, patch: k)
        return Arena.aligned(rows * wo * k * MemoryLayout<Float>.stride)
    }

    /// A dense square convolution with zero padding, like `nn.Conv2d(Cin, Cout, k, stride, padding)`,
    /// on channels-last data: the fp32 kernel as a linear over the flattened patch, through
    /// `conv2d(_:weights:…)` with the im2col panels in `context.scratch` (the fp32 linear splits
    /// its output columns over the pool, one single-threaded `cblas_sgemm` each).
    /// - Parameters:
    ///   - input: `[H, W, Cin]`.
    ///   - weight: `[Cout, Cin, k, k]` (PyTorch order).
    ///   - bias: `[Cout]` or nil.
    ///   - out: `[Ho, Wo, Cout]` with `Ho = (H + 2p - k)/s + 1`; must not overlap `input`.
    ///   - context: scratch of at least `conv2dScratchBytes(...)`, reset to its mark on return.
    public static func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int,
                              into out: Tensor, context: ComputeContext) throws {
        precondition(input.shape.rank == 3, "conv2d: input must be [H, W, Cin], got \(input.shape)")
        precondition(weight.shape.rank == 4 && weight.shape[2] == weight.shape[3], "conv2d: weight must be [Cout, Cin, k, k], got \(weight.shape)")
        let h = input.shape[0], w = input.shape[1], cin = input.shape[2]
        let cout = weight.shape[0], kernel = weight.shape[2]
        precondition(weight.shape[1] == cin, "conv2d: weight \(weight.shape) does not match Cin=\(cin)")
        let ho = convOutputSize(h, kernel: kernel, stride: stride, padding: padding)
        let wo = convOutputSize(w, kernel: kernel, stride: stride, padding: padding)
        precondition(out.shape == Shape(ho, wo, cout), "conv2d: out must be [\(ho), \(wo), \(cout)], got \(out.shape)")
        if let b = bias { precondition(b.count == cout, "conv2d: bias \(b.shape) does not match Cout=\(cout)") }
        precondition(!overlaps(out, input), "conv2d: out must not overlap input")
        // The kernel is a linear over the flattened patch: one im2col + GEMM path for every precision.
        let flat = Linear(weight: weight.reshaped(Shape(cout, cin * kernel * kernel)), bias: bias)
        try conv2d(input, weights: flat, kernel: kernel, stride: stride, padding: padding, into: out,
                   panels: context.scratch, context: context)
    }

    /// A convolution through a linear layer: `weights` is the kernel as a linear `[Cout, Cin·k²]`
    /// (the PyTorch `[Cout, Cin, k, k]` flattened, int8 or fp32, with the bias), applied to im2col
    /// panels of output rows built in `panels` (an arena; `conv2dScratchBytes` of it per call, released
    /// on return). Same result as `conv2d` up to the linear's precision.
    /// - Parameters: input `[H, W, Cin]`; out `[Ho, Wo, Cout]`.
    public static func conv2d(_ input: Tensor, weights: Linear, kernel: Int, stride: Int, padding: Int, into out: Tensor,
                              panels: Arena, context: ComputeContext) throws {
        precondition(input.shape.rank == 3, "conv2d: input must be [H, W, Cin], got \(input.shape)")
        let h = input.shape[0], w = input.shape[1], cin = input.shape[2]
        let k = cin * kernel * kernel, cout = weights.outFeatures
        precondition(weights.inFeatures == k, "conv2d: weights take \(weights.inFeatures) inputs, the patches have \(k)")
        let ho = convOutputSize(h, kernel: kernel, stride: stride, padding: padding)
        let wo = convOutputSize(w, kernel: kernel, stride: stride, padding: padding)
        precondition(out.shape == Shape(ho, wo, cout), "conv2d: out must be [\(ho), \(wo), \(cout)], got \(out.shape)")
        precondition(!overlaps(out, input), "conv2d: out must not overlap input")
        let chunkRows = conv2dChunkRows(outHeight: ho, outWidth: wo, patch: k)
        let mark = panels.mark()
        defer { panels.reset(to: mark) }
        let panel = try panels.tensor(Shape(chunkRows * wo, k))
        let flat = out.reshaped(Shape(ho * wo, cout))
        var y0 = 0
        while y0 < ho {
            let rows = min(chunkRows, ho - y0), p0 = y0 * wo, m = rows * wo
            let pv = panel.rows(0..<m)
            context.pool.parallelFor(m, minChunk: 64, Im2colRows(inp: input.base, h: h, w: w, cin: cin, kernel: kernel, stride: stride,
                                                                padding: padding, wo: wo, p0: p0, k: k, panel: pv.base))
            try weights.forward(pv, into: flat.rows(p0..<(p0 + m)), context: context)
            y0 += rows
        }
    }

    /// Scratch bytes `depthwiseConv3x3` takes: the weights transposed to `[9, C]` (64-byte aligned).
    public static func depthwiseConv3x3ScratchBytes(channels: Int) -> Int {
        Arena.aligned(9 * channels * MemoryLayout<Float>.stride)
    }

    /// Depthwise 3x3 convolution, stride 1, zero padding 1, like
    /// `nn.Conv2d(C, C, 3, padding=1, groups=C)`, vectorized over channels; with `residual`,
    /// `out = x + dw(x)` (Florence-2's ConvPosEnc).
    /// - Parameters:
    ///   - input: `[H, W, C]`.
    ///   - weight: `[C, 1, 3, 3]`; bias: `[C]`.
    ///   - out: `[H, W, C]`; must not overlap `input` (neighbouring rows are read after a row is written).
    ///   - context: scratch of at least `depthwiseConv3x3ScratchBytes(channels:)`, reset on return.
    public static func depthwiseConv3x3(_ input: Tensor, weight: Tensor, bias: Tensor, into out: Tensor,
                                        residual: Bool, context: ComputeContext) throws {
        precondition(input.shape.rank == 3, "depthwiseConv3x3: input must be [H, W, C], got \(input.shape)")
        let h = input.shape[0], w = input.shape[1], c = input.shape[2]
        precondition(weight.shape == Shape(c, 1, 3, 3), "depthwiseConv3x3: weight must be [\(c), 1, 3, 3], got \(weight.shape)")
        precondition(bias.count == c, "depthwiseConv3x3: bias \(bias.shape) does not match C=\(c)")
        precondition(out.shape == input.shape, "depthwiseConv3x3: out \(out.shape) must equal input \(input.shape)")
        precondition(!overlaps(out, input), "depthwiseConv3x3: out must not overlap input")
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        let wt = try context.scratch.tensor(Shape(9, c)).base
        ock_dwconv3x3_pack_f32(weight.base, c, wt)
        let ip = input.base, bp = bias.base, op = out.base
        let res: Int32 = residual ? 1 : 0
        parallelRows(h, rowCost: w * c * 9, context, DepthwiseRows(ip: ip, wt: wt, bp: bp, op: op, h: h, w: w, c: c, res: res))
    }

    // MARK: - Pooling and element-wise

    /// The mean over tokens, `out[c] = Σ_t x[t, c] / T` (Florence-2's `spatial_avg_pool`), fp32.
    /// - Parameters: x: `[T, C]`; out: `[C]`.
    public static func meanRows(_ x: Tensor, into out: Tensor) {
        precondition(x.shape.rank == 2, "meanRows: x must be [T, C], got \(x.shape)")
        precondition(out.count == x.shape[1], "meanRows: out \(out.shape) does not match C=\(x.shape[1])")
        ock_mean_rows_f32(x.base, x.shape[0], x.shape[1], out.base)
    }

    /// `out = a + b` element-wise; all three of one element count; `out` may be `a` or `b`.
    public static func add(_ a: Tensor, _ b: Tensor, into out: Tensor, context: ComputeContext) {
        precondition(a.count == b.count && a.count == out.count, "add: \(a.shape) + \(b.shape) into \(out.shape)")
        let ap = a.base, bp = b.base, op = out.base
        parallelRows(a.count, rowCost: 1, context, AddRows(ap: ap, bp: bp, op: op))
    }

    /// `x += y` element-wise (residual connections); same element count.
    public static func addInPlace(_ x: Tensor, _ y: Tensor, context: ComputeContext) {
        add(x, y, into: x, context: context)
    }

    /// `x[t, :] += row` for every row (Florence-2's temporal embedding, a position row).
    /// - Parameters: x: `[T, C]` (any shape whose last dimension is C); row: `[C]`.
    public static func addRowBroadcast(_ x: Tensor, row: Tensor) {
        let c = lastDim(x)
        precondition(row.count == c, "addRowBroadcast: row \(row.shape) does not match C=\(c) of \(x.shape)")
        ock_add_row_f32(x.base, row.base, c, 0, c == 0 ? 0 : x.count / c)
    }

    // MARK: - Windows

    /// Windows `windows` of the zero-padded partition of `x` (as `windowPartition` would lay them
    /// out), into `out [windows.count, ws·ws, C]`, the first requested window first.
    public static func windowGather(_ x: Tensor, window ws: Int, windows: Range<Int>, into out: Tensor, context: ComputeContext) {
        precondition(x.shape.rank == 3, "windowGather: x must be [H, W, C], got \(x.shape)")
        let h = x.shape[0], w = x.shape[1], c = x.shape[2]
        precondition(windows.lowerBound >= 0 && windows.upperBound <= windowCount(height: h, width: w, window: ws), "windowGather: windows \(windows) out of range")
        precondition(out.count >= windows.count * ws * ws * c, "windowGather: out \(out.shape) is too small for \(windows.count) windows")
        let xp = x.base, op = out.base, w0 = windows.lowerBound
        parallelRows(windows.count, rowCost: ws * ws * c, context, GatherRows(src: xp, dst: op, h: h, w: w, c: c, ws: ws, w0: w0, add: false))
    }

    /// Adds windows `windows` (laid out as `windowGather` returns them) into `x [H, W, C]`,
    /// cropping the padding: the residual connection after blocked window attention.
    public static func windowScatterAdd(_ win: Tensor, window ws: Int, windows: Range<Int>, into x: Tensor, context: ComputeContext) {
        precondition(x.shape.rank == 3, "windowScatterAdd: x must be [H, W, C], got \(x.shape)")
        let h = x.shape[0], w = x.shape[1], c = x.shape[2]
        precondition(windows.lowerBound >= 0 && windows.upperBound <= windowCount(height: h, width: w, window: ws), "windowScatterAdd: windows \(windows) out of range")
        precondition(win.count >= windows.count * ws * ws * c, "windowScatterAdd: windows \(win.shape) too small")
        parallelRows(windows.count, rowCost: ws * ws * c, context,
                     GatherRows(src: win.base, dst: x.base, h: h, w: w, c: c, ws: ws, w0: windows.lowerBound, add: true))
    }

    /// The number of `window`×`window` windows covering an `height`×`width` map after padding
    /// right/bottom to multiples of `window`: `⌈H/ws⌉·⌈W/ws⌉`.
    public static func windowCount(height: Int, width: Int, window: Int) -> Int {
        precondition(window >= 1 && height >= 0 && width >= 0)
        return ((height + window - 1) / window) * ((width + window - 1) / window)
    }

    /// DaViT window partition: pads `x` right/bottom with zeros to multiples of `window`
    /// (`pad_r = (ws - W % ws) % ws`, likewise `pad_b`) and cuts it into windows in
    /// (row-block, col-block) order, tokens row-major inside a window.
    /// - Parameters: x: `[H, W, C]`; out: `[windowCount, ws·ws, C]`.
    public static func windowPartition(_ x: Tensor, window ws: Int, into out: Tensor, context: ComputeContext) {
        precondition(x.shape.rank == 3, "windowPartition: x must be [H, W, C], got \(x.shape)")
        let h = x.shape[0], w = x.shape[1], c = x.shape[2]
        let n = windowCount(height: h, width: w, window: ws)
        precondition(out.shape == Shape(n, ws * ws, c), "windowPartition: out must be [\(n), \(ws * ws), \(c)], got \(out.shape)")
        precondition(!overlaps(out, x), "windowPartition: out must not overlap x")
        let xp = x.base, op = out.base
        parallelRows(n, rowCost: ws * ws * c, context, WindowRows(src: xp, dst: op, h: h, w: w, c: c, ws: ws, merge: false))
    }

    /// The inverse of `windowPartition`: writes the windows back to an `[H, W, C]` map, dropping
    /// the padded tokens.
    /// - Parameters: windows: `[windowCount(H, W, ws), ws·ws, C]`; out: `[H, W, C]`.
    public static func windowMerge(_ windows: Tensor, height h: Int, width w: Int, into out: Tensor,
                                   context: ComputeContext) {
        precondition(windows.shape.rank == 3, "windowMerge: windows must be [nWin, ws·ws, C], got \(windows.shape)")
        let c = windows.shape[2]
        var ws = 1
        while ws * ws < windows.shape[1] { ws += 1 }
        precondition(ws * ws == windows.shape[1], "windowMerge: \(windows.shape[1]) tokens per window is not a square")
        let n = windowCount(height: h, width: w, window: ws)
        precondition(windows.shape[0] == n, "windowMerge: \(windows.shape[0]) windows, expected \(n) for \(h)x\(w) with ws \(ws)")
        precondition(out.shape == Shape(h, w, c), "windowMerge: out must be [\(h), \(w), \(c)], got \(out.shape)")
        precondition(!overlaps(out, windows), "windowMerge: out must not overlap windows")
        let wp = windows.base, op = out.base
        parallelRows(n, rowCost: ws * ws * c, context, WindowRows(src: wp, dst: op, h: h, w: w, c: c, ws: ws, merge: true))
    }
}

// MARK: - Pool tasks (allocation-free hand-offs to the worker pool)

/// A body over a half-open row range `lo..<hi`.
protocol RowsTask {
    func callAsFunction(_ lo: Int, _ hi: Int)
}

private struct RowsAdapter<T: RowsTask>: RangeTask {
    let task: T
    func callAsFunction(_ r: Range<Int>) { task(r.lowerBound, r.upperBound) }
}

private struct LayerNormRows: RowsTask {
    let xp: UnsafeMutablePointer<Float>, yp: UnsafeMutablePointer<Float>, wp: UnsafeMutablePointer<Float>
    let bp: UnsafeMutablePointer<Float>, c: Int, eps: Float
    func callAsFunction(_ lo: Int, _ hi: Int) { ock_layernorm_f32(xp, yp, wp, bp, c, eps, lo, hi) }
}

private struct GeluRows: RowsTask {
    let p: UnsafeMutablePointer<Float>
    func callAsFunction(_ lo: Int, _ hi: Int) { ock_gelu_f32(p + lo, hi - lo) }
}

private struct SoftmaxRows: RowsTask {
    let p: UnsafeMutablePointer<Float>, n: Int
    func callAsFunction(_ lo: Int, _ hi: Int) { ock_softmax_f32(p, n, lo, hi) }
}

private struct AddRows: RowsTask {
    let ap: UnsafeMutablePointer<Float>, bp: UnsafeMutablePointer<Float>, op: UnsafeMutablePointer<Float>
    func callAsFunction(_ lo: Int, _ hi: Int) { ock_add_f32(ap + lo, bp + lo, op + lo, hi - lo) }
}

private struct WindowRows: RowsTask {
    let src: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>, h: Int, w: Int, c: Int, ws: Int, merge: Bool
    func callAsFunction(_ lo: Int, _ hi: Int) {
        if merge { ock_window_merge_f32(src, h, w, c, ws, dst, lo, hi) } else { ock_window_partition_f32(src, h, w, c, ws, dst, lo, hi) }
    }
}

private struct GatherRows: RowsTask {
    let src: UnsafeMutablePointer<Float>, dst: UnsafeMutablePointer<Float>, h: Int, w: Int, c: Int, ws: Int, w0: Int, add: Bool
    func callAsFunction(_ lo: Int, _ hi: Int) {
        // lo..<hi count windows from w0; each window's batch slot is its index minus w0.
        let slot = (lo) * ws * ws * c
        if add { ock_window_scatter_add_f32(src + slot, h, w, c, ws, dst, w0 + lo, w0 + hi) }
        else { ock_window_gather_f32(src, h, w, c, ws, dst + slot, w0 + lo, w0 + hi) }
    }
}

private struct DepthwiseRows: RowsTask {
    let ip: UnsafeMutablePointer<Float>, wt: UnsafeMutablePointer<Float>, bp: UnsafeMutablePointer<Float>
    let op: UnsafeMutablePointer<Float>, h: Int, w: Int, c: Int, res: Int32
    func callAsFunction(_ lo: Int, _ hi: Int) { ock_dwconv3x3_f32(ip, wt, bp, op, h, w, c, res, lo, hi) }
}

private struct Im2colRows: RangeTask {
    let inp: UnsafeMutablePointer<Float>, h: Int, w: Int, cin: Int, kernel: Int, stride: Int, padding: Int, wo: Int
    let p0: Int, k: Int, panel: UnsafeMutablePointer<Float>
    func callAsFunction(_ r: Range<Int>) {
        ock_im2col_f32(inp, h, w, cin, kernel, stride, padding, wo, p0 + r.lowerBound, p0 + r.upperBound, panel + r.lowerBound * k)
    }
}

