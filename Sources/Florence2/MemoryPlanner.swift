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
/// this plan sizes; a test checks that the arena's high-water mark never exceeds it.
public enum Florence2MemoryPlanner {
    /// Tokens per block where the vision tower processes a stage in pieces (MLP, channel-attention
    /// passes, conv im2col); window attention takes whole windows up to this many tokens.
    public static let visionBlockTokens = 1152
    /// Tokens per block in the text encoder's FFN.
    public static let textBlockTokens = 256

    /// The plan for `config` under `limits`, with `weightBytes` of mapped tensors (from the file).
    public static func plan(config: Florence2Config, limits: Florence2Limits, weightBytes: Int) throws -> MemoryPlan {
        let g = try Florence2Geometry(config: config, limits: limits)
        let f = MemoryLayout<Float>.stride
        func a(_ floats: Int) -> Int { Arena.aligned(floats * f) }
        var items: [MemoryPlan.Item] = [.init(kind: .weights, name: "tensors mapped from the model file", bytes: weightBytes)]
        var notes: [String] = []
        let v = config.vision, t = config.text
        let d = t.dModel, L = g.encoderLength, R = limits.numBeams, P = g.decoderPositions

        // Persistent through the phases: the input pixels and the encoder's hidden states.
        let pixels = a(limits.imageHeight * limits.imageWidth * 3)
        let encHidden = a(L * d)
        items.append(.init(kind: .arena, name: "pixels [\(limits.imageHeight), \(limits.imageWidth), 3] f32", bytes: pixels))
        items.append(.init(kind: .arena, name: "encoder hidden [\(L), \(d)] f32", bytes: encHidden))
        let persistent = pixels + encHidden

        // Vision: two residual buffers (ping-pong) of the largest stage, plus block temporaries.
        var maxStage = 0, worstStage = 0, stageLine = ""
        var residual = 0
        for s in 0..<v.stageCount { residual = max(residual, g.stageSizes[s].0 * g.stageSizes[s].1 * v.embedDims[s]) }
        for s in 0..<v.stageCount {
            let (h, w) = g.stageSizes[s]
            let n = h * w, c = v.embedDims[s], hidden = v.mlpHidden(s)
            let ws = v.windowSize
            let windowsPerBatch = max(1, visionBlockTokens / (ws * ws))
            let winTokens = windowsPerBatch * ws * ws
            let blk = max(min(visionBlockTokens, n), min(winTokens, ((h + ws - 1) / ws) * ((w + ws - 1) / ws) * ws * ws))
            let cin = s == 0 ? 3 : v.embedDims[s - 1]
            let k = v.patchSize[s]
            let im2col = a(min(visionBlockTokens, n) * cin * k * k)
            let temps = a(blk * c) * 3 + a(blk * max(3 * c, hidden))
            let channelA = a(c * (c / v.numGroups[s]))
            let scores = a(ws * ws * ws * ws) * limits.threads
            let stage = temps + channelA + max(im2col, scores)
            if stage > maxStage {
                maxStage = stage; worstStage = s
                stageLine = "block \(blk) tokens x \(c) ch, mlp \(hidden), im2col \(min(visionBlockTokens, n))x\(cin * k * k)"
            }
        }
        let c3 = v.embedDims[v.stageCount - 1]
        let projector = a(g.imageTokens * c3)
        let visionPeak = 2 * a(residual) + max(maxStage, projector)
        items.append(.init(kind: .arena, name: "vision phase: residual [\(residual) f32] x2 (ping-pong)", bytes: 2 * a(residual)))
        items.append(.init(kind: .arena, name: "vision phase: block temporaries, peak at stage \(worstStage) (\(stageLine))", bytes: maxStage))
        items.append(.init(kind: .arena, name: "vision phase: projector features [\(g.imageTokens), \(c3)] f32 (reuses the block bytes)", bytes: 0))

        // Text encoder: q, k, v, attention output, an FFN block and per-thread score rows.
        let encTok = min(textBlockTokens, L)
        let encPeak = a(L * d) * 4 + a(encTok * t.encoderFFN) + a(L * L) * limits.threads
        items.append(.init(kind: .arena, name: "text-encoder phase: q/k/v/attn [\(L), \(d)] x4, ffn [\(encTok), \(t.encoderFFN)], scores [\(L), \(L)] x\(limits.threads) threads", bytes: encPeak))

        // Decoder step: R rows of q/k/v/attn/hidden, FFN, logits and log-probs, per-thread scores.
        let decPeak = a(R * d) * 5 + a(R * t.decoderFFN) + a(R * t.vocabSize) * 2 + a(max(P, L)) * limits.threads * t.decoderHeads
        items.append(.init(kind: .arena, name: "decoder phase: step [\(R) rows]: hidden/q/k/v/attn, ffn, logits + log-probs [\(R), \(t.vocabSize)]", bytes: decPeak))

        // Kernel scratch: int8 activations of the widest linear input (M·K bytes + scale and sum per row).
        let mVision = visionBlockTokens, kVision = (0..<v.stageCount).map { max(v.mlpHidden($0), v.embedDims[$0]) }.max() ?? 0
        let mText = max(encTok, L), kText = max(d, t.encoderFFN)
        let quant = max(Arena.aligned(mVision * kVision) + Arena.aligned(mVision * 8),
                        Arena.aligned(mText * kText) + Arena.aligned(mText * 8))
        items.append(.init(kind: .arena, name: "kernel scratch (int8 activations, row scales and sums)", bytes: quant))

        let phasePeak = max(visionPeak, encPeak, decPeak)
        let arena = persistent + phasePeak + quant
        let phase = phasePeak == visionPeak ? "vision" : phasePeak == encPeak ? "text encoder" : "decoder"
        notes.append("the vision, text-encoder and decoder phases run one after another in the same arena bytes: the arena holds the persistent items, the largest phase (\(phase), \(MemoryPlan.format(phasePeak))) and the kernel scratch")

        let selfKV = t.decoderLayers * 2 * R * P * d * f
        let crossKV = t.decoderLayers * 2 * L * d * f
        items.append(.init(kind: .kvCache, name: "decoder self-attention K/V: \(t.decoderLayers) layers x 2 x [\(R) beams, \(P) positions, \(d)] f32", bytes: selfKV))
        items.append(.init(kind: .kvCache, name: "cross-attention K/V: \(t.decoderLayers) layers x 2 x [\(L), \(d)] f32", bytes: crossKV))
        return MemoryPlan(items: items, arenaBytes: arena, notes: notes)
    }
}
