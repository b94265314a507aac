// Florence-2 end to end: mirrors transformers' `Florence2ForConditionalGeneration` (vision tower,
// projector, BART encoder-decoder with the tied LM head) over a memory plan fixed at load.
import Compute
import Foundation
import Logging

// MARK: - Timings

/// Where one inference spent its time (milliseconds).
public struct Florence2Timings: Sendable, Codable, Equatable {
    public var preprocessMs: Double = 0
    public var visionMs: Double = 0
    public var projectorMs: Double = 0
    public var encoderMs: Double = 0
    public var crossKVMs: Double = 0
    public var decodeMs: Double = 0
    public var decodeSteps: Int = 0
    public init() {}
}

// MARK: - Model

/// A loaded Florence-2 model: every tensor of the file consumed and checked, the arenas of the
/// plan allocated once. Not thread-safe: one inference at a time.
public final class Florence2Model {
    /// The opened file, configuration and plan.
    public let file: Florence2ModelFile
    /// Threads and scratch.
    public let context: ComputeContext
    /// The tokenizer from the file.
    public let tokenizer: BPETokenizer
    /// The image processor from the file's preprocessing parameters.
    public let processor: Florence2ImageProcessor
    let vision: DaViT
    let projector: Projector
    let embed: Linear
    let encoder: TextEncoder
    let decoder: TextDecoder
    let geometry: Florence2Geometry
    let encHidden: Tensor
    let logits: Tensor
    let generator: Generator
    /// Timings of the last inference.
    public private(set) var timings = Florence2Timings()

    /// Loads the weights of `file` (strictly: every tensor consumed), on `pool`.
    public init(file: Florence2ModelFile, pool: WorkerPool, logger: Logger = Logger(label: "ocellus.model")) throws {
        self.file = file
        let f = file.file, config = file.config, limits = file.limits
        guard pool.threadCount <= limits.threads else {
            throw Florence2ConfigError.limit(name: "threads", reason: "the pool has \(pool.threadCount) threads but memory was planned for \(limits.threads)")
        }
        geometry = try Florence2Geometry(config: config, limits: limits)
        let scratch = try Florence2MemoryPlanner.scratchBytes(config: config, limits: limits)
        context = ComputeContext(pool: pool, scratchBytes: scratch)
        tokenizer = try BPETokenizer(file: f)
        processor = try Florence2ImageProcessor(config: config.image)
        let arena = file.arena
        // Persistent arena items, in the planner's order.
        encHidden = try arena.tensor(Shape(geometry.encoderLength, config.text.dModel))
        logits = try arena.tensor(Shape(limits.numBeams, config.text.vocabSize))
        vision = try DaViT(file: f, config: config)
        projector = try Projector(file: f, config: config, constants: arena)
        embed = try f.linear("t.embed", outFeatures: config.text.vocabSize, inFeatures: config.text.dModel, bias: false)
        encoder = try TextEncoder(file: f, config: config)
        decoder = try TextDecoder(file: f, config: config, embed: embed, limits: limits, geometry: geometry,
                                  kvArena: file.kvArena, arena: arena, context: context)
        try f.finish()
        generator = Generator(decoder: decoder, logits: logits)
        logger.info("model loaded", metadata: [
            "model": "\(f.path)",
            "int8_kernels": "\(Kernels.variant)",
            "ops_kernels": "\(Ops.kernelVariant)",
            "attention_kernels": "\(Attention.kernelVariant)",
            "threads": "\(pool.threadCount)",
            "scratch_bytes": "\(scratch)",
        ])
    }

    // MARK: - Encode

    /// The encoder input ids for `prompt` (the expanded task prompt): `[0] + bpe + [2]`.
    public func promptIds(_ prompt: String) -> [Int32] { tokenizer.encoderInputIds(prompt: prompt) }

    /// Runs the vision tower, projector and text encoder on `pixels` `[H, W, 3]` (normalized,
    /// channels-last) with the encoder prompt `ids`, and prepares the decoder's cross-attention.
    /// `observe` sees the per-stage tensors (parity tests).
    public func encode(pixels: Tensor, promptIds ids: [Int32], observe: ((String, Tensor) -> Void)? = nil) throws {
        let limits = file.limits, config = file.config
        guard ids.count <= limits.maxPromptTokens else {
            throw Florence2ConfigError.limit(name: "max prompt tokens", reason: "the prompt has \(ids.count) tokens, the plan allows \(limits.maxPromptTokens)")
        }
        guard pixels.shape == Shape(limits.imageHeight, limits.imageWidth, 3) else {
            throw Florence2ConfigError.limit(name: "image size", reason: "pixels \(pixels.shape), planned for [\(limits.imageHeight), \(limits.imageWidth), 3]")
        }
        let arena = file.arena, ctx = context
        let d = config.text.dModel
        let L = geometry.imageTokens + ids.count
        let hidden = encHidden.rows(0..<L)
        var t0 = Self.now()
        do {
            let mark = arena.mark()
            defer { arena.reset(to: mark) }
            let v = config.vision
            var residual = 0
            for s in 0..<v.stageCount { residual = max(residual, geometry.stageSizes[s].0 * geometry.stageSizes[s].1 * v.embedDims[s]) }
            let a = try arena.tensor(Shape(residual)), b = try arena.tensor(Shape(residual))
            let features = try vision.forward(pixels, stageSizes: geometry.stageSizes, bufferA: a, bufferB: b, arena: arena,
                                              context: ctx, blockTokens: Florence2MemoryPlanner.visionBlockTokens, observe: observe)
            timings.visionMs = Self.ms(since: t0)
            t0 = Self.now()
            let c3 = v.embedDims[v.stageCount - 1]
            let scratch = try arena.tensor(Shape(geometry.imageTokens, c3))
            try projector.forward(features, into: hidden.rows(0..<geometry.imageTokens), scratch: scratch, context: ctx)
            observe?("projector", hidden.rows(0..<geometry.imageTokens))
            timings.projectorMs = Self.ms(since: t0)
        }
        t0 = Self.now()
        let scale: Float = config.text.scaleEmbedding ? Float(Double(d).squareRoot()) : 1
        for i in 0..<ids.count {
            let id = ids[i]
            guard id >= 0 && Int(id) < config.text.vocabSize else {
                throw Florence2ConfigError.limit(name: "prompt", reason: "token id \(id) is outside the vocabulary of \(config.text.vocabSize)")
            }
            let row = hidden.rows((geometry.imageTokens + i)..<(geometry.imageTokens + i + 1)).reshaped(Shape(d))
            embed.embeddingRow(Int(id), into: row)
            if scale != 1 { for j in 0..<d { row[j] *= scale } }
        }
        try encoder.forward(hidden, arena: arena, context: ctx, blockTokens: Florence2MemoryPlanner.textBlockTokens,
                            ffn: config.text.encoderFFN)
        observe?("encoder", hidden)
        timings.encoderMs = Self.ms(since: t0)
        t0 = Self.now()
        try decoder.setEncoderOutput(hidden)
        timings.crossKVMs = Self.ms(since: t0)
    }

    // MARK: - Decode

    /// Called after every decoder step of `generate` (progress for a watchdog; throwing cancels the
    /// generation with that error).
    public var onDecodeStep: (() throws -> Void)? {
        get { generator.onStep }
        set { generator.onStep = newValue }
    }

    /// Generates from the last `encode` with `parameters`; returns the ids as transformers'
    /// `generate` does (decoder start token first).
    public func generate(_ parameters: GenerationParameters) throws -> [Int32] {
        let t0 = Self.now()
        let ids = try generator.generate(parameters)
        timings.decodeMs = Self.ms(since: t0)
        timings.decodeSteps = ids.count - 1
        return ids
    }

    /// Teacher-forced logits: feeds `decoderIds` one per step (one row) and writes the logits of
    /// every position into `out` `[decoderIds.count, vocab]` (parity tests, int8 accuracy).
    public func teacherForcedLogits(decoderIds: [Int32], into out: Tensor) throws {
        let v = file.config.text.vocabSize
        try decoder.start(rows: 1)
        var one: [Int32] = [0]
        for (i, id) in decoderIds.enumerated() {
            one[0] = id
            try decoder.step(tokens: one, logits: logits)
            out.rows(i..<(i + 1)).copy(from: logits.rows(0..<1).reshaped(Shape(1, v)))
        }
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    private static func ms(since t: UInt64) -> Double { Double(now() - t) / 1e6 }
}

// MARK: - One image, one task

/// Everything one `run` produced.
public struct Florence2Inference: Sendable {
    /// The task.
    public let task: Florence2Task
    /// The expanded prompt the encoder saw.
    public let prompt: String
    /// The generated ids as transformers' `generate` returns them.
    public let tokenIds: [Int32]
    /// The ids decoded without skipping special tokens (as the post-processor reads them).
    public let text: String
    /// The parsed result in the original image's pixel coordinates.
    public let result: Florence2Result
    /// Where the time went.
    public let timings: Florence2Timings
}

extension Florence2Model {
    /// Runs `task` (with `text`, for tasks that take input) on `image`: preprocess, encode,
    /// generate, post-process. Allocates only its returned values.
    public func run<P: RGBPixels>(image: P, task: Florence2Task, text: String?, parameters: GenerationParameters) throws -> Florence2Inference {
        let prompt = try task.prompt(text: text)
        let ids = promptIds(prompt)
        let arena = file.arena
        let mark = arena.mark()
        defer { arena.reset(to: mark) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let pixels = try processor.process(image, arena: arena)
        let pre = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        try encode(pixels: pixels, promptIds: ids)
        let out = try generate(parameters)
        var t = timings
        t.preprocessMs = pre
        let decoded = tokenizer.decode(out, skipSpecialTokens: false)
        let result = Florence2PostProcessor.process(decoded, task: task, imageWidth: image.width, imageHeight: image.height)
        return Florence2Inference(task: task, prompt: prompt, tokenIds: out, text: decoded, result: result, timings: t)
    }
}

extension Florence2Model {
    /// Prints the per-op vision timings when OCELLUS_PROFILE is set (debugging).
    public static func profileReport() { Profile.report() }
}
