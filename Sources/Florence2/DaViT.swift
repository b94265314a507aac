// The DaViT vision tower: mirrors transformers' `Florence2VisionBackbone` (ConvEmbed stages of
// `Florence2VisionBlock`s, each a spatial block then a channel block), channels-last.
import Compute
import Foundation

// MARK: - Weights

/// A stage's convolutional patch embedding (`convs.{s}`).
struct ConvEmbed {
    let weights: Linear  // v.conv{s}.w [C_s, C_in, k, k] f32 seen as [C_s, C_in·k²], or .qweight/.scale int8; + v.conv{s}.b
    let normWeight: Tensor  // v.conv{s}.ln.w [C_in] (pre-norm) or [C_s] f32
    let normBias: Tensor  // v.conv{s}.ln.b
    let kernel: Int
    let stride: Int
    let padding: Int
    let prenorm: Bool

    /// Loads stage `s`'s convolution: int8 (`.qweight` panel16x4 + `.scale`, optionally with a
    /// residual level, as a linear over the flattened patch) when the file has it, else the F32
    /// kernel `.w`.
    static func load(_ f: GGUFFile, stage s: Int, cin: Int, cout: Int, kernel k: Int) throws -> Linear {
        let base = "v.conv\(s)", patch = cin * k * k
        let bias = try f.tensor(base + ".b", shape: Shape(cout))
        if f.hasTensor(base + ".qweight") {
            let l = try f.linear(base, outFeatures: cout, inFeatures: patch, bias: false)
            guard case let .int8(w) = l.storage else { throw GGUFError.missingTensor(file: f.path, tensor: base + ".qweight") }
            return Linear(int8: w, residual: l.residual, bias: bias)
        }
        let w = try f.tensor(base + ".w", shape: Shape(cout, cin, k, k))
        return Linear(weight: w.reshaped(Shape(cout, patch)), bias: bias)
    }
}

/// One half of a DaViT block: the spatial (window attention) or channel (channel attention) block.
/// A class: the forward loops copy a reference only.
final class DaViTHalf {
    let cpe0W: Tensor, cpe0B: Tensor  // <p>.cpe0.w [C, 1, 3, 3], .b [C] f32 (conv1.fn.dw)
    let ln1W: Tensor, ln1B: Tensor  // <p>.ln1 [C] f32
    let qkv: Linear  // <p>.qkv [3C, C] int8 + bias
    let proj: Linear  // <p>.proj [C, C] int8 + bias
    let cpe1W: Tensor, cpe1B: Tensor  // <p>.cpe1 [C, 1, 3, 3], [C] f32 (conv2.fn.dw)
    let ln2W: Tensor, ln2B: Tensor  // <p>.ln2 [C] f32
    let fc1: Linear  // <p>.fc1 [hidden, C] int8 + bias
    let fc2: Linear  // <p>.fc2 [C, hidden] int8 + bias

    init(file f: GGUFFile, prefix p: String, channels c: Int, hidden: Int) throws {
        cpe0W = try f.tensor(p + ".cpe0.w", shape: Shape(c, 1, 3, 3))
        cpe0B = try f.tensor(p + ".cpe0.b", shape: Shape(c))
        ln1W = try f.tensor(p + ".ln1.w", shape: Shape(c))
        ln1B = try f.tensor(p + ".ln1.b", shape: Shape(c))
        qkv = try f.linear(p + ".qkv", outFeatures: 3 * c, inFeatures: c, bias: true)
        proj = try f.linear(p + ".proj", outFeatures: c, inFeatures: c, bias: true)
        cpe1W = try f.tensor(p + ".cpe1.w", shape: Shape(c, 1, 3, 3))
        cpe1B = try f.tensor(p + ".cpe1.b", shape: Shape(c))
        ln2W = try f.tensor(p + ".ln2.w", shape: Shape(c))
        ln2B = try f.tensor(p + ".ln2.b", shape: Shape(c))
        fc1 = try f.linear(p + ".fc1", outFeatures: hidden, inFeatures: c, bias: true)
        fc2 = try f.linear(p + ".fc2", outFeatures: c, inFeatures: hidden, bias: true)
    }
}

/// A stage: its embedding and `depths[s]` (spatial, channel) block pairs.
final class DaViTStage {
    let embed: ConvEmbed
    let spatial: [DaViTHalf]
    let channel: [DaViTHalf]
    let channels: Int
    let heads: Int
    let groups: Int
    let hidden: Int

    init(embed: ConvEmbed, spatial: [DaViTHalf], channel: [DaViTHalf], channels: Int, heads: Int, groups: Int, hidden: Int) {
        self.embed = embed; self.spatial = spatial; self.channel = channel
        self.channels = channels; self.heads = heads; self.groups = groups; self.hidden = hidden
    }
}

// MARK: - Tower

/// DaViT over a channels-last image: `[H, W, 3]` normalized pixels → `[h, w, C_last]` features.
final class DaViT {
    let config: Florence2VisionConfig
    let eps: Float
    let stages: [DaViTStage]

    /// Loads every vision tensor of FORMAT.md from `f` (strict shapes and types).
    init(file f: GGUFFile, config: Florence2Config) throws {
        let v = config.vision
        self.config = v
        eps = config.layerNormEps
        var stages: [DaViTStage] = []
        for s in 0..<v.stageCount {
            let c = v.embedDims[s], cin = s == 0 ? 3 : v.embedDims[s - 1], k = v.patchSize[s]
            let normC = v.patchPrenorm[s] ? cin : c
            let embed = ConvEmbed(
                weights: try ConvEmbed.load(f, stage: s, cin: cin, cout: c, kernel: k),
                normWeight: try f.tensor("v.conv\(s).ln.w", shape: Shape(normC)),
                normBias: try f.tensor("v.conv\(s).ln.b", shape: Shape(normC)),
                kernel: k, stride: v.patchStride[s], padding: v.patchPadding[s], prenorm: v.patchPrenorm[s])
            var spatial: [DaViTHalf] = [], channel: [DaViTHalf] = []
            for d in 0..<v.depths[s] {
                let p = "v.s\(s).b\(d)"
                spatial.append(try DaViTHalf(file: f, prefix: p + ".sp", channels: c, hidden: v.mlpHidden(s)))
                channel.append(try DaViTHalf(file: f, prefix: p + ".ch", channels: c, hidden: v.mlpHidden(s)))
            }
            stages.append(DaViTStage(embed: embed, spatial: spatial, channel: channel, channels: c, heads: v.numHeads[s],
                                     groups: v.numGroups[s], hidden: v.mlpHidden(s)))
        }
        self.stages = stages
    }

    // MARK: - Forward

    /// Runs the tower on `pixels` `[H, W, 3]`; every temporary comes from `arena` (released when
    /// this returns, except the result, which lies in `bufferA` or `bufferB`). `stageSizes` are
    /// the feature-map sizes after each stage (from `Florence2Geometry`). `observe(name, t)` sees
    /// each conv-embed output and stage output (for parity tests; nil in production).
    func forward(_ pixels: Tensor, stageSizes: [(Int, Int)], bufferA: Tensor, bufferB: Tensor, arena: Arena,
                 context ctx: ComputeContext, blockTokens: Int, observe: ((String, Tensor) -> Void)?) throws -> Tensor {
        var cur = pixels
        var curIsA = false  // the pixels are in neither buffer
        for s in 0..<stages.count {
            let stage = stages[s]
            let (h, w) = stageSizes[s]
            let c = stage.channels
            let e = stage.embed
            if e.prenorm { Ops.layerNorm(cur, weight: e.normWeight, bias: e.normBias, eps: eps, into: cur, context: ctx) }
            let outBuf = curIsA ? bufferB : bufferA
            let y = outBuf.rows(0..<(h * w * c)).reshaped(Shape(h, w, c))
            try Profile.time("conv") {
                try Ops.conv2d(cur, weights: e.weights, kernel: e.kernel, stride: e.stride, padding: e.padding, into: y,
                               panels: arena, context: ctx)
            }
            if !e.prenorm { Ops.layerNorm(y, weight: e.normWeight, bias: e.normBias, eps: eps, into: y, context: ctx) }
            observe?("conv\(s)", y)
            cur = y
            curIsA = !curIsA
            var other = (curIsA ? bufferB : bufferA).rows(0..<(h * w * c)).reshaped(Shape(h, w, c))
            for d in 0..<stage.spatial.count {
                try spatial(stage.spatial[d], stage, &cur, &other, &curIsA, arena: arena, ctx: ctx, blockTokens: blockTokens)
                try channel(stage.channel[d], stage, &cur, &other, &curIsA, arena: arena, ctx: ctx, blockTokens: blockTokens)
            }
            observe?("stage\(s)", cur)
        }
        return cur
    }

    /// `x = x + dw(x)` into the other buffer, then swap (ConvPosEnc).
    private func positional(_ wt: Tensor, _ b: Tensor, _ cur: inout Tensor, _ other: inout Tensor, _ curIsA: inout Bool,
                            ctx: ComputeContext) throws {
        try Profile.time("dwconv") { try Ops.depthwiseConv3x3(cur, weight: wt, bias: b, into: other, residual: true, context: ctx) }
        swap(&cur, &other)
        curIsA.toggle()
    }

    /// `x = x + fc2(gelu(fc1(LN2(x))))`, in blocks of `blockTokens` tokens.
    private func mlp(_ p: DaViTHalf, _ stage: DaViTStage, _ cur: Tensor, arena: Arena, ctx: ComputeContext, blockTokens: Int) throws {
        let c = stage.channels
        let n = cur.count / c
        let tokens = cur.reshaped(Shape(n, c))
        let b = min(blockTokens, n)
        let mark = arena.mark()
        defer { arena.reset(to: mark) }
        let t1 = try arena.tensor(Shape(b, c)), t2 = try arena.tensor(Shape(b, stage.hidden)), t3 = try arena.tensor(Shape(b, c))
        var r0 = 0
        while r0 < n {
            let m = min(b, n - r0)
            let x = tokens.rows(r0..<(r0 + m)), a = t1.rows(0..<m), hdn = t2.rows(0..<m), o = t3.rows(0..<m)
            Profile.time("ln") { Ops.layerNorm(x, weight: p.ln2W, bias: p.ln2B, eps: eps, into: a, context: ctx) }
            try Profile.time("fc1") { try p.fc1.forward(a, into: hdn, context: ctx) }
            Profile.time("gelu") { Ops.gelu(hdn, context: ctx) }
            try Profile.time("fc2") { try p.fc2.forward(hdn, into: o, context: ctx) }
            Profile.time("add") { Ops.addInPlace(x, o, context: ctx) }
            r0 += m
        }
    }

    /// The spatial block: ConvPosEnc, window attention (windows in batches), ConvPosEnc, MLP.
    private func spatial(_ p: DaViTHalf, _ stage: DaViTStage, _ cur: inout Tensor, _ other: inout Tensor, _ curIsA: inout Bool,
                         arena: Arena, ctx: ComputeContext, blockTokens: Int) throws {
        let c = stage.channels, ws = config.windowSize, t = ws * ws
        let h = cur.shape[0], w = cur.shape[1]
        try positional(p.cpe0W, p.cpe0B, &cur, &other, &curIsA, ctx: ctx)
        // LN1 over the real tokens; windows are padded with zeros after the norm.
        Profile.time("ln") { Ops.layerNorm(cur, weight: p.ln1W, bias: p.ln1B, eps: eps, into: other, context: ctx) }
        let nWin = Ops.windowCount(height: h, width: w, window: ws)
        let batch = max(1, min(nWin, blockTokens / t))
        let mark = arena.mark()
        let win = try arena.tensor(Shape(batch * t, c)), qkv = try arena.tensor(Shape(batch * t, 3 * c))
        let att = try arena.tensor(Shape(batch * t, c))
        var w0 = 0
        while w0 < nWin {
            let nb = min(batch, nWin - w0), m = nb * t
            let wv = win.rows(0..<m), qv = qkv.rows(0..<m), av = att.rows(0..<m)
            Profile.time("gather") { Ops.windowGather(other, window: ws, windows: w0..<(w0 + nb), into: wv, context: ctx) }
            try Profile.time("qkv") { try p.qkv.forward(wv, into: qv, context: ctx) }
            try Profile.time("winattn") { try Attention.window(qkv: qv.reshaped(Shape(nb, t, 3 * c)), heads: stage.heads, out: av.reshaped(Shape(nb, t, c)), context: ctx) }
            try Profile.time("proj") { try p.proj.forward(av, into: wv, context: ctx) }
            Profile.time("scatter") { Ops.windowScatterAdd(wv, window: ws, windows: w0..<(w0 + nb), into: cur, context: ctx) }
            w0 += nb
        }
        arena.reset(to: mark)
        try positional(p.cpe1W, p.cpe1B, &cur, &other, &curIsA, ctx: ctx)
        try mlp(p, stage, cur, arena: arena, ctx: ctx, blockTokens: blockTokens)
    }

    /// The channel block: ConvPosEnc, channel attention over all tokens (two passes over token
    /// blocks: scores, then their application), ConvPosEnc, MLP.
    private func channel(_ p: DaViTHalf, _ stage: DaViTStage, _ cur: inout Tensor, _ other: inout Tensor, _ curIsA: inout Bool,
                         arena: Arena, ctx: ComputeContext, blockTokens: Int) throws {
        let c = stage.channels
        try positional(p.cpe0W, p.cpe0B, &cur, &other, &curIsA, ctx: ctx)
        let n = cur.count / c
        Profile.time("ln") { Ops.layerNorm(cur, weight: p.ln1W, bias: p.ln1B, eps: eps, into: other, context: ctx) }
        let normed = other.reshaped(Shape(n, c)), residual = cur.reshaped(Shape(n, c))
        let mark = arena.mark()
        defer { arena.reset(to: mark) }
        let b = min(blockTokens, n)
        var scores = try ChannelAttentionBlocks(channels: c, groups: stage.groups, threads: ctx.pool.threadCount, arena: arena)
        // q·k from the first 2C outputs and v from the last C when the weights can be cut there
        // (int8 panels of 16); otherwise all 3C outputs in both passes.
        let qkPart = p.qkv.outputs(0..<(2 * c)), vPart = p.qkv.outputs((2 * c)..<(3 * c))
        let split = qkPart != nil && vPart != nil
        let buf = try arena.tensor(Shape(b, 3 * c)), att = try arena.tensor(Shape(b, c)), out = try arena.tensor(Shape(b, c))
        var r0 = 0
        while r0 < n {
            let m = min(b, n - r0), x = normed.rows(r0..<(r0 + m))
            if split, let qk = qkPart {
                let y = buf.reshaped(Shape(3 * b, c)).rows(0..<(2 * m)).reshaped(Shape(m, 2 * c))
                try Profile.time("qkv") { try qk.forward(x, into: y, context: ctx) }
                Profile.time("chattn") { scores.accumulate(y, context: ctx) }
            } else {
                let y = buf.rows(0..<m)
                try Profile.time("qkv") { try p.qkv.forward(x, into: y, context: ctx) }
                Profile.time("chattn") { scores.accumulate(y, context: ctx) }
            }
            r0 += m
        }
        scores.finish()
        r0 = 0
        while r0 < n {
            let m = min(b, n - r0), x = normed.rows(r0..<(r0 + m)), a = att.rows(0..<m), o = out.rows(0..<m)
            if split, let v = vPart {
                let y = buf.reshaped(Shape(3 * b, c)).rows(0..<m)
                try Profile.time("qkv") { try v.forward(x, into: y, context: ctx) }
                Profile.time("chattn") { scores.apply(y, column: 0, into: a, context: ctx) }
            } else {
                let y = buf.rows(0..<m)
                try Profile.time("qkv") { try p.qkv.forward(x, into: y, context: ctx) }
                Profile.time("chattn") { scores.apply(y, column: 2 * c, into: a, context: ctx) }
            }
            try Profile.time("proj") { try p.proj.forward(a, into: o, context: ctx) }
            Ops.addInPlace(residual.rows(r0..<(r0 + m)), o, context: ctx)
            r0 += m
        }
        arena.reset(to: mark)
        try positional(p.cpe1W, p.cpe1B, &cur, &other, &curIsA, ctx: ctx)
        try mlp(p, stage, cur, arena: arena, ctx: ctx, blockTokens: blockTokens)
    }
}

