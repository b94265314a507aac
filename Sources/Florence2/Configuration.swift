// Florence-2 configuration: mirrors transformers' `Florence2Config` (vision `Florence2VisionConfig`,
// text `BartConfig`), the processor's preprocessing and `generation_config.json`, as the model file
// stores them (Quantization/FORMAT.md).

// MARK: - Vision (DaViT)

/// The DaViT vision tower's hyper-parameters (`vision_config`).
public struct Florence2VisionConfig: Sendable, Equatable {
    /// Channels per stage (`embed_dim`), e.g. 128, 256, 512, 1024.
    public var embedDims: [Int]
    /// Attention heads per stage (window attention).
    public var numHeads: [Int]
    /// Channel-attention groups per stage.
    public var numGroups: [Int]
    /// Blocks per stage (each a spatial then a channel block).
    public var depths: [Int]
    /// Conv-embed kernel size per stage.
    public var patchSize: [Int]
    /// Conv-embed stride per stage.
    public var patchStride: [Int]
    /// Conv-embed zero padding per stage.
    public var patchPadding: [Int]
    /// Whether the conv-embed's layer norm comes before the conv (on its input channels).
    public var patchPrenorm: [Bool]
    /// Window side of window attention (12).
    public var windowSize: Int
    /// MLP hidden = `mlpRatio` × channels.
    public var mlpRatio: Float
    /// Rows of each learned 2-D position table (50).
    public var maxPosEmbeddings: Int
    /// Length of the cosine temporal table (100).
    public var maxTemporalEmbeddings: Int

    /// The number of stages (4).
    public var stageCount: Int { embedDims.count }

    /// The feature-map side after stage `s` for an input side of `side` pixels.
    public func featureSide(after s: Int, input side: Int) -> Int {
        var x = side
        for i in 0...s { x = (x + 2 * patchPadding[i] - patchSize[i]) / patchStride[i] + 1 }
        return x
    }

    /// MLP hidden width of stage `s`.
    public func mlpHidden(_ s: Int) -> Int { Int((Float(embedDims[s]) * mlpRatio).rounded()) }
}

// MARK: - Text (BART)

/// The BART encoder-decoder's hyper-parameters (`text_config`).
public struct Florence2TextConfig: Sendable, Equatable {
    /// Hidden width `d_model`.
    public var dModel: Int
    /// Encoder layers.
    public var encoderLayers: Int
    /// Decoder layers.
    public var decoderLayers: Int
    /// Encoder attention heads.
    public var encoderHeads: Int
    /// Decoder attention heads.
    public var decoderHeads: Int
    /// Encoder FFN width.
    public var encoderFFN: Int
    /// Decoder FFN width.
    public var decoderFFN: Int
    /// Positions per sequence (the tables hold this + 2 rows: BART's offset of 2).
    public var maxPositionEmbeddings: Int
    /// Rows of the tied token embedding / LM head.
    public var vocabSize: Int
    /// Whether token embeddings are multiplied by √d (false for Florence-2).
    public var scaleEmbedding: Bool
}

// MARK: - Preprocessing and generation

/// The image processor's parameters (`preprocessor_config.json`).
public struct Florence2ImageConfig: Sendable, Equatable {
    /// Target height in pixels (768).
    public var height: Int
    /// Target width in pixels (768).
    public var width: Int
    /// Per-channel mean (after rescale).
    public var mean: [Float]
    /// Per-channel std.
    public var std: [Float]
    /// Multiplier from 8-bit values (1/255).
    public var rescaleFactor: Float
    /// PIL resampling filter number (3 = bicubic).
    public var resample: Int
    /// Image tokens in the encoder input (577 at 768).
    public var seqLength: Int
}

/// Generation defaults from `generation_config.json`; nil where the source config had no value
/// (the engine then uses the transformers default).
public struct Florence2GenerationConfig: Sendable, Equatable {
    public var decoderStartTokenId: Int?
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var padTokenId: Int?
    public var forcedBosTokenId: Int?
    public var forcedEosTokenId: Int?
    public var numBeams: Int?
    public var noRepeatNgramSize: Int?
    public var maxLength: Int?
    public var earlyStopping: Bool?
    public var lengthPenalty: Float?

    /// All defaults absent.
    public init() {}
}

// MARK: - Whole model

/// Everything that shapes a Florence-2 model file, read from its metadata.
public struct Florence2Config: Sendable, Equatable {
    /// The vision tower.
    public var vision: Florence2VisionConfig
    /// The BART encoder-decoder.
    public var text: Florence2TextConfig
    /// Projector output width (`projection_dim`, equal to `d_model`).
    public var projectionDim: Int
    /// The `<image>` token id (51289).
    public var imageTokenId: Int
    /// Layer-norm epsilon (1e-5).
    public var layerNormEps: Float
    /// Preprocessing.
    public var image: Florence2ImageConfig
    /// Generation defaults.
    public var generation: Florence2GenerationConfig

    /// Checks the relations the engine relies on; throws naming the key that breaks one.
    public func validate() throws {
        func bad(_ key: String, _ why: String) -> Florence2ConfigError { .invalid(key: key, reason: why) }
        let v = vision
        let n = v.embedDims.count
        guard n >= 1 else { throw bad("florence2.vision.embed_dim", "no stages") }
        for (key, count) in [("num_heads", v.numHeads.count), ("num_groups", v.numGroups.count), ("depths", v.depths.count),
                             ("patch_size", v.patchSize.count), ("patch_stride", v.patchStride.count),
                             ("patch_padding", v.patchPadding.count), ("patch_prenorm", v.patchPrenorm.count)] where count != n {
            throw bad("florence2.vision.\(key)", "has \(count) entries but embed_dim has \(n)")
        }
        for s in 0..<n {
            guard v.embedDims[s] > 0, v.numHeads[s] > 0, v.embedDims[s] % v.numHeads[s] == 0 else {
                throw bad("florence2.vision.num_heads", "stage \(s): \(v.embedDims[s]) channels do not split into \(v.numHeads[s]) heads")
            }
            guard v.numGroups[s] > 0, v.embedDims[s] % v.numGroups[s] == 0 else {
                throw bad("florence2.vision.num_groups", "stage \(s): \(v.embedDims[s]) channels do not split into \(v.numGroups[s]) groups")
            }
            guard v.patchSize[s] > 0, v.patchStride[s] > 0, v.patchPadding[s] >= 0, v.depths[s] >= 0 else {
                throw bad("florence2.vision.patch_size", "stage \(s): kernel, stride and padding must be positive")
            }
        }
        guard v.windowSize > 0 else { throw bad("florence2.vision.window_size", "must be positive") }
        guard v.mlpRatio > 0 else { throw bad("florence2.vision.mlp_ratio", "must be positive") }
        guard v.embedDims[n - 1] % 2 == 0 else { throw bad("florence2.vision.embed_dim", "the last stage needs an even channel count (2-D position halves)") }
        let t = text
        guard t.dModel > 0, t.encoderHeads > 0, t.dModel % t.encoderHeads == 0 else {
            throw bad("florence2.text.encoder_heads", "d_model \(t.dModel) does not split into \(t.encoderHeads) heads")
        }
        guard t.decoderHeads > 0, t.dModel % t.decoderHeads == 0 else {
            throw bad("florence2.text.decoder_heads", "d_model \(t.dModel) does not split into \(t.decoderHeads) heads")
        }
        guard projectionDim == t.dModel else { throw bad("florence2.projection_dim", "is \(projectionDim) but d_model is \(t.dModel)") }
        guard t.vocabSize > 0, imageTokenId >= 0 else { throw bad("florence2.text.vocab_size", "must be positive") }
        guard t.maxPositionEmbeddings > 0 else { throw bad("florence2.text.max_position_embeddings", "must be positive") }
        guard image.height > 0, image.width > 0 else { throw bad("florence2.image.height", "image size must be positive") }
        guard image.mean.count == 3, image.std.count == 3 else { throw bad("florence2.image.mean", "mean and std need 3 values") }
    }
}

/// A configuration that cannot describe a working model.
public enum Florence2ConfigError: Error, CustomStringConvertible, Equatable {
    /// The value of `key` is unusable.
    case invalid(key: String, reason: String)
    /// A limit is outside what the model supports.
    case limit(name: String, reason: String)

    public var description: String {
        switch self {
        case let .invalid(key, reason): return "model configuration: \(key) \(reason)"
        case let .limit(name, reason): return "inference limit \(name): \(reason)"
        }
    }
}
