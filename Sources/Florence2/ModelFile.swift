// Opening a Florence-2 model file: its configuration (Quantization/FORMAT.md keys), the memory
// plan for the configured limits, the budget check, and the arena that every inference reuses.
import Compute
import Logging

// MARK: - Configuration from metadata

extension Florence2Config {
    /// Reads every configuration key of FORMAT.md from `file`; a missing or mistyped key is an
    /// error naming the file and the key, and the result is validated.
    public init(file f: GGUFFile) throws {
        let arch = try f.string("general.architecture")
        guard arch == "florence2" else {
            throw Florence2ConfigError.invalid(key: "general.architecture", reason: "is '\(arch)' in \(f.path), expected 'florence2'")
        }
        func ints(_ k: String) throws -> [Int] { try f.u32Array(k).map(Int.init) }
        func int(_ k: String) throws -> Int { Int(try f.u32(k)) }
        func intIf(_ k: String) throws -> Int? { try f.u32IfPresent(k).map(Int.init) }
        let v = "florence2.vision.", t = "florence2.text.", im = "florence2.image.", g = "florence2.generation."
        vision = Florence2VisionConfig(
            embedDims: try ints(v + "embed_dim"), numHeads: try ints(v + "num_heads"), numGroups: try ints(v + "num_groups"),
            depths: try ints(v + "depths"), patchSize: try ints(v + "patch_size"), patchStride: try ints(v + "patch_stride"),
            patchPadding: try ints(v + "patch_padding"), patchPrenorm: try f.boolArray(v + "patch_prenorm"),
            windowSize: try int(v + "window_size"), mlpRatio: try f.f32(v + "mlp_ratio"),
            maxPosEmbeddings: try int(v + "max_pos_embeddings"), maxTemporalEmbeddings: try int(v + "max_temporal_embeddings"))
        text = Florence2TextConfig(
            dModel: try int(t + "d_model"), encoderLayers: try int(t + "encoder_layers"), decoderLayers: try int(t + "decoder_layers"),
            encoderHeads: try int(t + "encoder_heads"), decoderHeads: try int(t + "decoder_heads"),
            encoderFFN: try int(t + "encoder_ffn_dim"), decoderFFN: try int(t + "decoder_ffn_dim"),
            maxPositionEmbeddings: try int(t + "max_position_embeddings"), vocabSize: try int(t + "vocab_size"),
            scaleEmbedding: try f.bool(t + "scale_embedding"))
        projectionDim = try int("florence2.projection_dim")
        imageTokenId = try int("florence2.image_token_id")
        layerNormEps = try f.f32("florence2.layer_norm_eps")
        image = Florence2ImageConfig(
            height: try int(im + "height"), width: try int(im + "width"), mean: try f.f32Array(im + "mean"),
            std: try f.f32Array(im + "std"), rescaleFactor: try f.f32(im + "rescale_factor"),
            resample: try int(im + "resample"), seqLength: try int(im + "seq_length"))
        var gen = Florence2GenerationConfig()
        gen.decoderStartTokenId = try intIf(g + "decoder_start_token_id")
        gen.bosTokenId = try intIf(g + "bos_token_id")
        gen.eosTokenId = try intIf(g + "eos_token_id")
        gen.padTokenId = try intIf(g + "pad_token_id")
        gen.forcedBosTokenId = try intIf(g + "forced_bos_token_id")
        gen.forcedEosTokenId = try intIf(g + "forced_eos_token_id")
        gen.numBeams = try intIf(g + "num_beams")
        gen.noRepeatNgramSize = try intIf(g + "no_repeat_ngram_size")
        gen.maxLength = try intIf(g + "max_length")
        gen.earlyStopping = try f.boolIfPresent(g + "early_stopping")
        gen.lengthPenalty = try f.f32IfPresent(g + "length_penalty")
        generation = gen
        do { try validate() } catch let e as Florence2ConfigError {
            throw Florence2ModelError.badConfig(path: f.path, underlying: e)
        }
    }
}

// MARK: - Errors

/// Why a model file cannot be used.
public enum Florence2ModelError: Error, CustomStringConvertible {
    /// The file's configuration is inconsistent.
    case badConfig(path: String, underlying: Florence2ConfigError)
    /// The plan does not fit the budget or the limits do not fit the model.
    case plan(path: String, underlying: Error)

    public var description: String {
        switch self {
        case let .badConfig(path, e): return "\(path): \(e)"
        case let .plan(path, e): return "\(path): \(e)"
        }
    }
}

// MARK: - Opened model file

/// A mapped Florence-2 model file with its configuration and memory plan, and the memory that the
/// plan reserves. Creating one logs the budget once; nothing else is allocated per inference.
public final class Florence2ModelFile: @unchecked Sendable {
    /// The mapped file (kept alive: tensor views point into it).
    public let file: GGUFFile
    /// Its configuration.
    public let config: Florence2Config
    /// The limits the memory was planned for.
    public let limits: Florence2Limits
    /// The plan.
    public let plan: MemoryPlan
    /// The activation arena, `plan.arenaBytes` bytes, allocated once.
    public let arena: Arena
    /// The KV-cache region, `plan.kvCacheBytes` bytes, allocated once.
    public let kvArena: Arena

    /// Opens `path`, reads its configuration, plans memory for `limits` (defaults from the file
    /// when nil) and fails before allocating when the plan exceeds `budgetBytes` (nil: no limit).
    public init(path: String, limits: Florence2Limits? = nil, threads: Int, budgetBytes: Int?,
                logger: Logger = Logger(label: "ocellus.model")) throws {
        let f = try GGUFFile(path: path)
        let config = try Florence2Config(file: f)
        let limits = limits ?? Florence2Limits(config: config, threads: threads)
        let weightBytes = f.tensorInfos.reduce(0) { $0 + $1.byteCount }
        let plan: MemoryPlan
        do {
            plan = try Florence2MemoryPlanner.plan(config: config, limits: limits, weightBytes: weightBytes)
            try plan.check(budget: budgetBytes)
        } catch {
            throw Florence2ModelError.plan(path: path, underlying: error)
        }
        self.file = f
        self.config = config
        self.limits = limits
        self.plan = plan
        self.arena = Arena(capacity: plan.arenaBytes)
        self.kvArena = Arena(capacity: plan.kvCacheBytes)
        logger.info("memory plan", metadata: [
            "model": "\(path)",
            "weights_bytes": "\(plan.weightBytes)",
            "arena_bytes": "\(plan.arenaBytes)",
            "kv_cache_bytes": "\(plan.kvCacheBytes)",
            "total_bytes": "\(plan.totalBytes)",
            "budget_bytes": "\(budgetBytes.map(String.init) ?? "none")",
            "image": "\(limits.imageWidth)x\(limits.imageHeight)",
            "prompt_tokens": "\(limits.maxPromptTokens)",
            "new_tokens": "\(limits.maxNewTokens)",
            "beams": "\(limits.numBeams)",
            "threads": "\(limits.threads)",
        ])
    }
}
