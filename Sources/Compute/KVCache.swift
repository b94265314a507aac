// Decoder attention caches: the self-attention K/V of one BART decoder layer, grown one position
// per step for every beam (transformers `EncoderDecoderCache.self_attention_cache` with
// `reorder_cache`), and the cross-attention K/V computed once per image and shared by all beams.
import CKernels

// MARK: - Self-attention cache

/// One decoder layer's self-attention keys and values for up to `maxRows` rows (beams) of up to
/// `maxPositions` positions each. Memory comes from an `Arena` once; nothing is allocated per step.
///
/// Layout: K and V are each `[maxRows, maxPositions, d]`, so row r's first `length` positions are
/// one contiguous `[length, d]` block (see `keys(row:)`).
public final class KVCache: @unchecked Sendable {
    /// The most rows the cache holds.
    public let maxRows: Int
    /// The most positions per row.
    public let maxPositions: Int
    /// Model width d (heads × headDim).
    public let dim: Int
    /// Rows in use now.
    public private(set) var rows: Int = 0
    /// Positions cached per row (the same for every row).
    public private(set) var length: Int = 0
    let k: UnsafeMutablePointer<Float>
    let v: UnsafeMutablePointer<Float>
    // Reorder bookkeeping, sized once at init (mutated in place, never reallocated).
    private var pending: [Bool]
    private var readers: [Int]

    /// Arena bytes a cache of `rows × maxPositions × d` takes (K and V).
    public static func bytes(rows: Int, maxPositions: Int, d: Int) -> Int {
        2 * Arena.aligned(rows * maxPositions * d * MemoryLayout<Float>.stride)
    }

    /// A cache for `rows` rows of `maxPositions` positions of width `d`, carved from `arena`
    /// (`bytes(rows:maxPositions:d:)` of it). Starts with `rows` rows of length 0.
    public init(rows: Int, maxPositions: Int, d: Int, arena: Arena) throws {
        precondition(rows >= 1 && maxPositions >= 1 && d >= 1, "bad KV cache size \(rows)×\(maxPositions)×\(d)")
        maxRows = rows
        self.maxPositions = maxPositions
        dim = d
        let n = rows * maxPositions * d
        k = try arena.allocateBytes(n * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: n)
        v = try arena.allocateBytes(n * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: n)
        pending = [Bool](repeating: false, count: rows)
        readers = [Int](repeating: 0, count: rows)
        self.rows = rows
    }

    /// Empties the cache and starts `rows` rows (1 ≤ rows ≤ maxRows).
    public func reset(rows: Int) {
        precondition(rows >= 1 && rows <= maxRows, "KV cache reset to \(rows) rows, capacity \(maxRows)")
        self.rows = rows
        length = 0
    }

    @inline(__always) private func rowOffset(_ r: Int) -> Int { r * maxPositions * dim }

    /// Keys of `row`, positions `0..<length`, as a `[length, d]` view (valid until the next
    /// `append`, `reorder` or `reset`).
    public func keys(row: Int) -> Tensor {
        precondition(row >= 0 && row < rows, "row \(row) of \(rows)")
        return Tensor(base: k + rowOffset(row), shape: Shape(length, dim))
    }

    /// Values of `row` as a `[length, d]` view (as `keys(row:)`).
    public func values(row: Int) -> Tensor {
        precondition(row >= 0 && row < rows, "row \(row) of \(rows)")
        return Tensor(base: v + rowOffset(row), shape: Shape(length, dim))
    }

    // MARK: Append

    /// Appends P positions to every row: `k` and `v` hold `rows × P × d` floats, row-major
    /// `[rows, P, d]` (for one decode step P = 1, i.e. `[rows, d]`; a rows = 1 prefill may pass
    /// `[P, d]`).
    public func append(k newK: Tensor, v newV: Tensor) {
        precondition(newK.count == newV.count, "append: k \(newK.shape) and v \(newV.shape) differ")
        precondition(newK.count % (rows * dim) == 0, "append: \(newK.shape) is not [\(rows), P, \(dim)]")
        let p = newK.count / (rows * dim)
        precondition(length + p <= maxPositions, "KV cache full: \(length) + \(p) > \(maxPositions) positions")
        for r in 0..<rows {
            let dst = rowOffset(r) + length * dim, src = r * p * dim
            (k + dst).update(from: newK.base + src, count: p * dim)
            (v + dst).update(from: newV.base + src, count: p * dim)
        }
        length += p
    }

    // MARK: Reorder

    /// Scratch bytes `reorder` needs: one row of K and V, `2 × aligned(maxPositions × d × 4)`.
    public static func reorderScratchBytes(maxPositions: Int, d: Int) -> Int {
        2 * Arena.aligned(maxPositions * d * MemoryLayout<Float>.stride)
    }

    /// Reorders rows after a beam step: new row i continues old row `source[i]`. `source.count`
    /// (the new row count, ≥ 1) may be smaller than `rows` (beams dropping out) and may repeat
    /// rows. Done in place, copying only rows that change, with at most one row of
    /// `context.scratch` (`reorderScratchBytes`) to break cycles.
    public func reorder(_ source: [Int], context: ComputeContext) throws {
        let newRows = source.count
        precondition(newRows >= 1 && newRows <= rows, "reorder to \(newRows) rows from \(rows)")
        for i in 0..<newRows { precondition(source[i] >= 0 && source[i] < rows, "reorder source \(source[i]) out of \(rows) rows") }
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        let count = length * dim
        // Rows still to write, and how many pending rows still read each old row.
        for i in 0..<rows { pending[i] = false; readers[i] = 0 }
        var left = 0
        for i in 0..<newRows where source[i] != i {
            pending[i] = true
            readers[source[i]] += 1
            left += 1
        }
        var temp: UnsafeMutablePointer<Float>?  // [2, length, d] copy of row `tempRow` (K then V)
        var tempRow = -1
        while left > 0 {
            var progressed = false
            for i in 0..<newRows where pending[i] && readers[i] == 0 {
                // Nobody needs old row i any more: overwrite it from its source.
                let s = source[i]
                if s == tempRow, let t = temp {
                    (k + rowOffset(i)).update(from: t, count: count)
                    (v + rowOffset(i)).update(from: t + count, count: count)
                } else {
                    (k + rowOffset(i)).update(from: k + rowOffset(s), count: count)
                    (v + rowOffset(i)).update(from: v + rowOffset(s), count: count)
                }
                pending[i] = false
                readers[s] -= 1
                left -= 1
                progressed = true
            }
            if progressed || left == 0 { continue }
            // Only cycles remain (each pending row read by exactly one other): park one row in
            // the scratch copy, and let its reader take it from there.
            var i = 0
            while i < newRows && !pending[i] { i += 1 }
            if i == newRows { break }
            if temp == nil {
                temp = try context.scratch.allocateBytes(2 * maxPositions * dim * MemoryLayout<Float>.stride)
                    .bindMemory(to: Float.self, capacity: 2 * maxPositions * dim)
            }
            temp!.update(from: k + rowOffset(i), count: count)
            (temp! + count).update(from: v + rowOffset(i), count: count)
            tempRow = i
            readers[i] = 0
        }
        rows = newRows
    }

    // MARK: Attend

    /// Rows × heads × length × headDim below which `attend` stays on the calling thread (waking
    /// the pool costs more than the work).
    public static let parallelThreshold = 1 << 18

    /// Scratch bytes `attend` needs: `threads × aligned(maxPositions × 4)` (one score row each).
    public static func attendScratchBytes(maxPositions: Int, threads: Int) -> Int {
        max(1, threads) * Arena.aligned(maxPositions * MemoryLayout<Float>.stride)
    }

    /// Decoder self-attention for one step: `q [rows, d]`, each row's query attending over its
    /// own cached positions `0..<length` (append this step's K/V first, so the newest is
    /// included), heads head-major along d, scale `headDim^-0.5`, into `out [rows, d]`.
    /// For a prefill of P positions, append them all and run, per row,
    /// `Attention.multiHead(q: [P, d], k: keys(row:), v: values(row:), causal: true, ...)`.
    public func attend(q: Tensor, heads: Int, out: Tensor, context: ComputeContext) throws {
        precondition(q.shape == Shape(rows, dim) && out.shape == Shape(rows, dim),
                     "attend: q \(q.shape) and out \(out.shape) must be [\(rows), \(dim)]")
        precondition(heads >= 1 && dim % heads == 0, "d=\(dim) is not a multiple of heads=\(heads)")
        precondition(length >= 1, "attend over an empty cache")
        let hd = dim / heads
        let scale = Float(1 / Double(hd).squareRoot())
        let items = rows * heads
        let work = items * length * hd
        let tasks = work < KVCache.parallelThreshold ? 1 : min(context.pool.threadCount, items)
        let slice = Arena.aligned(length * MemoryLayout<Float>.stride) / MemoryLayout<Float>.stride
        let mark = context.scratch.mark()
        defer { context.scratch.reset(to: mark) }
        let scratch = try context.scratch.allocateBytes(tasks * slice * MemoryLayout<Float>.stride)
            .bindMemory(to: Float.self, capacity: tasks * slice)
        let qp = q.base, op = out.base, kp = k, vp = v
        let len = length, d = dim, stride = maxPositions * dim
        context.pool.run(tasks, AttendTask(tasks: tasks, items: items, heads: heads, qp: qp, kp: kp, vp: vp, op: op,
                                           d: d, hd: hd, stride: stride, len: len, scale: scale, scratch: scratch, slice: slice))
    }

    /// One worker's (row, head) items of `attend`, strided by the task count.
    private struct AttendTask: ParallelTask {
        let tasks: Int, items: Int, heads: Int
        let qp: UnsafeMutablePointer<Float>, kp: UnsafeMutablePointer<Float>, vp: UnsafeMutablePointer<Float>
        let op: UnsafeMutablePointer<Float>, d: Int, hd: Int, stride: Int, len: Int, scale: Float
        let scratch: UnsafeMutablePointer<Float>, slice: Int
        func callAsFunction(_ task: Int) {
            var item = task
            while item < items {
                let r = item / heads, h = item % heads
                ock_attn_query_f32(qp + r * d + h * hd, kp + r * stride + h * hd, d, vp + r * stride + h * hd, d,
                                   len, 1, hd, scale, scratch + task * slice, op + r * d + h * hd)
                item += tasks
            }
        }
    }
}

// MARK: - Cross-attention K/V

/// One decoder layer's cross-attention keys and values over the encoder output, `[S, d]` each,
/// computed once per image (the caller runs k_proj/v_proj into `keys`/`values`) and shared by
/// every beam.
public final class CrossKV: @unchecked Sendable {
    /// The most encoder positions S.
    public let maxPositions: Int
    /// Model width d.
    public let dim: Int
    /// Encoder positions in use.
    public private(set) var length: Int = 0
    let k: UnsafeMutablePointer<Float>
    let v: UnsafeMutablePointer<Float>

    /// Arena bytes for K and V of `maxPositions × d`.
    public static func bytes(maxPositions: Int, d: Int) -> Int {
        2 * Arena.aligned(maxPositions * d * MemoryLayout<Float>.stride)
    }

    /// Cross K/V storage for up to `maxPositions` encoder positions, from `arena`.
    public init(maxPositions: Int, d: Int, arena: Arena) throws {
        precondition(maxPositions >= 1 && d >= 1, "bad cross K/V size \(maxPositions)×\(d)")
        self.maxPositions = maxPositions
        dim = d
        let n = maxPositions * d
        k = try arena.allocateBytes(n * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: n)
        v = try arena.allocateBytes(n * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: n)
    }

    /// Sets the encoder length S for the current image (then fill `keys` and `values`).
    public func setLength(_ s: Int) {
        precondition(s >= 1 && s <= maxPositions, "cross K/V length \(s), capacity \(maxPositions)")
        length = s
    }

    /// Keys `[S, d]` (write k_proj(encoder output) here).
    public var keys: Tensor { Tensor(base: k, shape: Shape(length, dim)) }
    /// Values `[S, d]` (write v_proj(encoder output) here).
    public var values: Tensor { Tensor(base: v, shape: Shape(length, dim)) }

    /// Scratch bytes `attend` needs for `rows` queries (see `Attention.multiHeadScratchBytes`).
    public static func attendScratchBytes(rows: Int, maxPositions: Int, threads: Int) -> Int {
        Attention.multiHeadScratchBytes(queries: rows, keys: maxPositions, threads: threads)
    }

    /// Cross-attention: every row of `q [rows, d]` attends over all S encoder positions (no mask),
    /// into `out [rows, d]`.
    public func attend(q: Tensor, heads: Int, out: Tensor, context: ComputeContext) throws {
        precondition(length >= 1, "cross attention before setLength")
        try Attention.multiHead(q: q, k: keys, v: values, heads: heads, causal: false, out: out, context: context)
    }
}
