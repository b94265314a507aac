// The Florence-2 memory plan: the worst-case bytes of one inference from the configuration and the
// configured limits, computed before anything large is allocated (DESIGN.md rule 5).
import Compute

// MARK: - Limits

/// What one inference may ask for; the plan (and so the arena) is sized for the worst case.
public struct Florence2Limits: Sendable, Equatable {
    /// Image height fed to the vision tower (the model's preprocessing size by default).
    public var imageHeight: Int
    /// Image width fed to the vision tower.
    public var imageWidth: Int
    /// Prompt tokens in the encoder input after the image tokens, `<s>` and `</s>` included.
    public var maxPromptTokens: Int
    /// Generated tokens per sequence, the forced `<s>` and `</s>` included.
    public var maxNewTokens: Int
    /// Beams (1 = greedy).
    public var numBeams: Int
    /// Worker threads (each gets its own attention scratch).
    public var threads: Int

    /// Default limits for `config`: its preprocessing size, 256 prompt tokens, 256 new tokens,
    /// the generation config's beams (3 when absent) and `threads` threads.
    public init(config: Florence2Config, threads: Int) {
        imageHeight = config.image.height
        imageWidth = config.image.width
        maxPromptTokens = 256
        maxNewTokens = 256
        numBeams = config.generation.numBeams ?? 3
        self.threads = threads
    }

    /// Explicit limits.
    public init(imageHeight: Int, imageWidth: Int, maxPromptTokens: Int, maxNewTokens: Int, numBeams: Int, threads: Int) {
        self.imageHeight = imageHeight
        self.imageWidth = imageWidth
        self.maxPromptTokens = maxPromptTokens
        self.maxNewTokens = maxNewTokens
        self.numBeams = numBeams
        self.threads = threads
    }
}

// MARK: - Shapes that follow from config and limits

/// Sequence lengths and feature-map sizes for one configuration and set of limits.
public struct Florence2Geometry: Sendable, Equatable {
    /// Feature-map (height, width) after each stage.
    public let stageSizes: [(Int, Int)]
    /// Image tokens in the encoder input: h·w of the last stage plus the pooled token.
    public let imageTokens: Int
    /// Encoder positions: image tokens plus prompt tokens.
    public let encoderLength: Int
    /// Decoder positions per sequence: the start token plus the new tokens.
    public let decoderPositions: Int

    public static func == (l: Florence2Geometry, r: Florence2Geometry) -> Bool {
        l.stageSizes.elementsEqual(r.stageSizes, by: { $0 == $1 }) && l.imageTokens == r.imageTokens
            && l.encoderLength == r.encoderLength && l.decoderPositions == r.decoderPositions
    }

    /// The geometry, or an error naming the limit the model cannot serve.
    public init(config: Florence2Config, limits: Florence2Limits) throws {
        func bad(_ n: String, _ why: String) -> Florence2ConfigError { .limit(name: n, reason: why) }
        guard limits.imageHeight > 0, limits.imageWidth > 0 else { throw bad("image size", "must be positive") }
        guard limits.maxPromptTokens >= 2 else { throw bad("max prompt tokens", "must hold at least <s> and </s>") }
        guard limits.maxNewTokens >= 1 else { throw bad("max new tokens", "must be at least 1") }
        guard limits.numBeams >= 1 else { throw bad("beams", "must be at least 1") }
        guard limits.threads >= 1 else { throw bad("threads", "must be at least 1") }
        let v = config.vision
        var sizes: [(Int, Int)] = []
        for s in 0..<v.stageCount {
            let h = v.featureSide(after: s, input: limits.imageHeight)
            let w = v.featureSide(after: s, input: limits.imageWidth)
            guard h >= 1, w >= 1 else {
                throw bad("image size", "\(limits.imageWidth)x\(limits.imageHeight) leaves no pixels after vision stage \(s)")
            }
            sizes.append((h, w))
        }
        let (h3, w3) = sizes[sizes.count - 1]
        guard h3 <= v.maxPosEmbeddings, w3 <= v.maxPosEmbeddings else {
            throw bad("image size", "\(limits.imageWidth)x\(limits.imageHeight) gives a \(w3)x\(h3) feature map but the position tables hold \(v.maxPosEmbeddings)")
        }
        stageSizes = sizes
        imageTokens = h3 * w3 + 1
        encoderLength = imageTokens + limits.maxPromptTokens
        decoderPositions = 1 + limits.maxNewTokens
        let maxPos = config.text.maxPositionEmbeddings
        guard encoderLength <= maxPos else {
            throw bad("max prompt tokens", "\(imageTokens) image tokens + \(limits.maxPromptTokens) prompt tokens exceed the model's \(maxPos) positions")
        }
        guard decoderPositions <= maxPos else {
            throw bad("max new tokens", "\(limits.maxNewTokens) exceeds the model's \(maxPos - 1) decoder positions")
        }
    }
}

// MARK: - Planner

/// Builds the `MemoryPlan` of a Florence-2 model. The forward pass allocates only from the arena
/// and scratch this plan sizes, in the order written here; a test runs the model and checks that
/// neither arena's high-water mark exceeds its plan.
public enum Florence2MemoryPlanner {
    /// Tokens per block where the vision tower processes a stage in pieces (MLP); window attention
    /// takes as many whole windows as fit in this many tokens (at least one).
    public static let visionBlockTokens = 576
    /// Tokens per block in the text encoder's FFN.
    public static let textBlockTokens = 256

    private static let f = MemoryLayout<Float>.stride
    private static func a(_ floats: Int) -> Int { Arena.aligned(floats * f) }

    /// Arena bytes of the vision phase (the two residual buffers, then the largest block's
    /// temporaries, or the projector's features), and the stage that peaks.
    static func visionBytes(config: Florence2Config, geometry g: Florence2Geometry, limits: Florence2Limits) -> (bytes: Int, residual: Int, worst: Int, worstStage: Int) {
        let v = config.vision
        var residual = 0
        for s in 0..<v.stageCount { residual = max(residual, g.stageSizes[s].0 * g.stageSizes[s].1 * v.embedDims[s]) }
        var worst = 0, worstStage = 0
        for s in 0..<v.stageCount {
            let (h, w) = g.stageSizes[s]
            let n = h * w, c = v.embedDims[s], ws = v.windowSize, t = ws * ws
            let nWin = ((h + ws - 1) / ws) * ((w + ws - 1) / ws)
            let batch = max(1, min(nWin, visionBlockTokens / t))
            let spatial = a(batch * t * c) + a(batch * t * 3 * c) + a(batch * t * c)
            let channel = a(min(visionBlockTokens, n) * 3 * c) + 2 * a(min(visionBlockTokens, n) * c)
                + ChannelAttentionBlocks.bytes(channels: c, groups: v.numGroups[s], threads: limits.threads)
            let b = min(visionBlockTokens, n)
            let mlp = a(b * c) + a(b * v.mlpHidden(s)) + a(b * c)
            let cin = s == 0 ? 3 : v.embedDims[s - 1]
            let (inH, inW) = s == 0 ? (limits.imageHeight, limits.imageWidth) : g.stageSizes[s - 1]
            let convPanel = Ops.conv2dScratchBytes(height: inH, width: inW, inChannels: cin, kernel: v.patchSize[s],
                                                   stride: v.patchStride[s], padding: v.patchPadding[s])
            let peak = max(spatial, channel, mlp, convPanel)
            if peak > worst { worst = peak; worstStage = s }
        }
        let c3 = v.embedDims[v.stageCount - 1]
        let projector = a(g.imageTokens * c3)
        return (2 * a(residual) + max(worst, projector), residual, max(worst, projector), worstStage)
    }

    /// Arena bytes of the text-encoder phase.
    static func encoderBytes(config: Florence2Config, geometry g: Florence2Geometry) -> Int {
        let t = config.text, L = g.encoderLength
        return 4 * a(L * t.dModel) + a(min(textBlockTokens, L) * t.encoderFFN)
    }

    /// Arena bytes of one decoder step.
    static func decoderBytes(config: Florence2Config, limits: Florence2Limits) -> Int {
        let t = config.text, r = limits.numBeams
        return 5 * a(r * t.dModel) + a(r * t.decoderFFN)
    }

    /// Bytes of the compute context's scratch arena: the largest temporary any op takes (ops run
    /// one after another, each releasing its scratch).
    public static func scratchBytes(config: Florence2Config, limits: Florence2Limits) throws -> Int {
        let g = try Florence2Geometry(config: config, limits: limits)
        let v = config.vision, t = config.text, threads = limits.threads
        var need = 0
        var inH = limits.imageHeight, inW = limits.imageWidth
        for s in 0..<v.stageCount {
            let (h, w) = g.stageSizes[s]
            let n = h * w, c = v.embedDims[s], cin = s == 0 ? 3 : v.embedDims[s - 1], ws = v.windowSize, tk = ws * ws
            let nWin = ((h + ws - 1) / ws) * ((w + ws - 1) / ws)
            let batch = max(1, min(nWin, visionBlockTokens / tk))
            let b = min(visionBlockTokens, n)
            let patch = cin * v.patchSize[s] * v.patchSize[s]
            let panelRows = Ops.conv2dScratchBytes(height: inH, width: inW, inChannels: cin, kernel: v.patchSize[s],
                                                   stride: v.patchStride[s], padding: v.patchPadding[s]) / (patch * 4)
            need = max(need, Linear.scratchBytes(rows: panelRows + 1, inFeatures: patch))
            need = max(need, Ops.depthwiseConv3x3ScratchBytes(channels: c))
            need = max(need, Attention.windowScratchBytes(tokens: tk, threads: threads))
            need = max(need, Linear.scratchBytes(rows: batch * tk, inFeatures: c))
            need = max(need, Linear.scratchBytes(rows: n, inFeatures: c))
            need = max(need, Linear.scratchBytes(rows: b, inFeatures: v.mlpHidden(s)))
            inH = h
            inW = w
        }
        let c3 = v.embedDims[v.stageCount - 1], L = g.encoderLength, d = t.dModel
        need = max(need, Linear.scratchBytes(rows: g.imageTokens, inFeatures: c3))
        need = max(need, Linear.scratchBytes(rows: L, inFeatures: d))
        need = max(need, Linear.scratchBytes(rows: min(textBlockTokens, L), inFeatures: t.encoderFFN))
        need = max(need, Attention.multiHeadScratchBytes(queries: L, keys: L, threads: threads))
        need = max(need, KVCache.attendScratchBytes(maxPositions: g.decoderPositions, threads: threads))
        need = max(need, KVCache.reorderScratchBytes(maxPositions: g.decoderPositions, d: d))
        need = max(need, CrossKV.attendScratchBytes(rows: limits.numBeams, maxPositions: L, threads: threads))
        need = max(need, Linear.scratchBytes(rows: limits.numBeams, inFeatures: max(d, t.decoderFFN)))
        // A linear with an int8 residual level (any the converter chose) adds its second-level
        // scratch: for a chunk of many rows, or for a decoder step's rows (up to the LM head's width).
        var widestIn = max(d, t.encoderFFN, t.decoderFFN), widestOut = max(3 * d, t.encoderFFN, t.decoderFFN)
        for s in 0..<v.stageCount {
            let cin = s == 0 ? 3 : v.embedDims[s - 1]
            widestIn = max(widestIn, v.embedDims[s], v.mlpHidden(s), cin * v.patchSize[s] * v.patchSize[s])
            widestOut = max(widestOut, 3 * v.embedDims[s], v.mlpHidden(s))
        }
        let residualChunk = max(Linear.residualScratchBytes(rows: Linear.residualChunkRows, inFeatures: widestIn, outFeatures: widestOut),
                                Linear.residualScratchBytes(rows: limits.numBeams, inFeatures: widestIn, outFeatures: max(widestOut, t.vocabSize)))
        return need + residualChunk
    }

    /// The plan for `config` under `limits`, with `weightBytes` of mapped tensors (from the file).
    public static func plan(config: Florence2Config, limits: Florence2Limits, weightBytes: Int) throws -> MemoryPlan {
        let g = try Florence2Geometry(config: config, limits: limits)
        var items: [MemoryPlan.Item] = [.init(kind: .weights, name: "tensors mapped from the model file", bytes: weightBytes)]
        var notes: [String] = []
        let v = config.vision, t = config.text
        let d = t.dModel, L = g.encoderLength, R = limits.numBeams, P = g.decoderPositions

        // Persistent: pixels, the encoder's hidden states, logits, the temporal-embedding row.
        let pixels = a(limits.imageHeight * limits.imageWidth * 3)
        let encHidden = a(L * d)
        let logits = a(R * t.vocabSize)
        let constants = a(v.embedDims[v.stageCount - 1])
        items.append(.init(kind: .arena, name: "pixels [\(limits.imageHeight), \(limits.imageWidth), 3] f32", bytes: pixels))
        items.append(.init(kind: .arena, name: "encoder hidden [\(L), \(d)] f32", bytes: encHidden))
        items.append(.init(kind: .arena, name: "logits [\(R), \(t.vocabSize)] f32", bytes: logits))
        items.append(.init(kind: .arena, name: "temporal embedding row [\(v.embedDims[v.stageCount - 1])] f32", bytes: constants))
        let persistent = pixels + encHidden + logits + constants

        let vision = visionBytes(config: config, geometry: g, limits: limits)
        items.append(.init(kind: .arena, name: "vision phase: residual [\(vision.residual) f32] x2 (ping-pong)", bytes: 2 * a(vision.residual)))
        items.append(.init(kind: .arena, name: "vision phase: largest block temporaries (stage \(vision.worstStage)) or projector features", bytes: vision.worst))
        let enc = encoderBytes(config: config, geometry: g)
        items.append(.init(kind: .arena, name: "text-encoder phase: q/k/v/attn [\(L), \(d)] x4, ffn [\(min(textBlockTokens, L)), \(t.encoderFFN)]", bytes: enc))
        let dec = decoderBytes(config: config, limits: limits)
        items.append(.init(kind: .arena, name: "decoder phase: step [\(R) rows] x/q/k/v/attn, ffn", bytes: dec))
        let scratch = try scratchBytes(config: config, limits: limits)
        items.append(.init(kind: .arena, name: "scratch arena (int8 activations, im2col, attention scores; largest single op)", bytes: scratch))

        let phasePeak = max(vision.bytes, enc, dec)
        let arena = persistent + phasePeak + scratch
        let phase = phasePeak == vision.bytes ? "vision" : phasePeak == enc ? "text encoder" : "decoder"
        notes.append("the vision, text-encoder and decoder phases run one after another in the same bytes: the arena holds the persistent items, the largest phase (\(phase), \(MemoryPlan.format(phasePeak))) and the scratch")

        let selfKV = t.decoderLayers * KVCache.bytes(rows: R, maxPositions: P, d: d)
        let crossKV = t.decoderLayers * CrossKV.bytes(maxPositions: L, d: d)
        items.append(.init(kind: .kvCache, name: "decoder self-attention K/V: \(t.decoderLayers) layers x 2 x [\(R) beams, \(P) positions, \(d)] f32", bytes: selfKV))
        items.append(.init(kind: .kvCache, name: "cross-attention K/V: \(t.decoderLayers) layers x 2 x [\(L), \(d)] f32", bytes: crossKV))
        return MemoryPlan(items: items, arenaBytes: arena, notes: notes)
    }

    /// The activation arena alone (persistent + the largest phase), without the scratch arena.
    static func activationBytes(config: Florence2Config, limits: Florence2Limits) throws -> Int {
        let g = try Florence2Geometry(config: config, limits: limits)
        let v = config.vision, t = config.text
        let persistent = a(limits.imageHeight * limits.imageWidth * 3) + a(g.encoderLength * t.dModel)
            + a(limits.numBeams * t.vocabSize) + a(v.embedDims[v.stageCount - 1])
        return persistent + max(visionBytes(config: config, geometry: g, limits: limits).bytes, encoderBytes(config: config, geometry: g),
                                decoderBytes(config: config, limits: limits))
    }
}
