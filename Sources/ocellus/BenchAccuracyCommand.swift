// `ocellus bench accuracy`: how far an int8 model file is from its fp32 twin on one image: NMSE of
// the vision features, encoder output and teacher-forced logits, and top-1 agreement of the logits
// along the fp32 model's own greedy sequence.
import ArgumentParser
import Capture
import Compute
import Florence2
import Foundation

struct BenchAccuracyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accuracy",
        abstract: "Compare an int8 model file with its fp32 twin on one image (NMSE per stage, teacher-forced top-1 agreement).")

    @Option(name: .long, help: "The model file under test (e.g. int8).")
    var model: String

    @Option(name: .long, help: "The reference model file (fp32, same checkpoint).")
    var reference: String

    @Option(name: .long, help: "The task token.")
    var task = "<CAPTION>"

    @Option(name: .long, help: "Tokens the reference generates (forced with min-new-tokens) and both models are scored on.")
    var tokens = 20

    @Option(name: .long, help: "Worker threads.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Argument(help: "The image file.")
    var image: String

    func run() throws {
        let picture = try ImageFile.read(path: image)
        let t = try Florence2Task(token: task)
        let pool = WorkerPool(threads: threads)
        func load(_ path: String) throws -> Florence2Model {
            let config = try Florence2Config(file: GGUFFile(path: path))
            var limits = Florence2Limits(config: config, threads: threads)
            limits.maxNewTokens = tokens
            limits.numBeams = 1
            return try Florence2Model(file: Florence2ModelFile(path: path, limits: limits, threads: threads, budgetBytes: nil), pool: pool)
        }
        let test = try load(model), ref = try load(reference)
        let ids = ref.promptIds(try t.prompt())
        let scratch = Arena(capacity: 64 << 20)
        var refStages: [String: [Float]] = [:], testStages: [String: [Float]] = [:]
        let refPixels = try ref.processor.process(picture, arena: scratch)
        try ref.encode(pixels: refPixels, promptIds: ids) { k, v in refStages[k] = v.toArray() }
        var p = GenerationParameters(config: ref.file.config.generation, maxNewTokens: tokens)
        p.numBeams = 1
        p.minNewTokens = tokens
        let sequence = try ref.generate(p)
        let v = ref.file.config.text.vocabSize
        let inputs = Array(sequence.dropLast())
        let refLogits = try scratch.tensor(Shape(inputs.count, v))
        try ref.teacherForcedLogits(decoderIds: inputs, into: refLogits)
        try test.encode(pixels: refPixels, promptIds: ids) { k, v in testStages[k] = v.toArray() }
        let testLogits = try scratch.tensor(Shape(inputs.count, v))
        try test.teacherForcedLogits(decoderIds: inputs, into: testLogits)

        func nmse(_ a: [Float], _ b: [Float]) -> Double {
            var num = 0.0, den = 0.0
            for i in 0..<min(a.count, b.count) { let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i]) }
            return den > 0 ? num / den : num
        }
        var report: [String: Any] = [:]
        for key in refStages.keys.sorted() { report["nmse_" + key] = nmse(testStages[key] ?? [], refStages[key]!) }
        let a = testLogits.toArray(), b = refLogits.toArray()
        report["nmse_logits"] = nmse(a, b)
        var agree = 0
        for r in 0..<inputs.count {
            var ia = 0, ib = 0
            for j in 1..<v {
                if a[r * v + j] > a[r * v + ia] { ia = j }
                if b[r * v + j] > b[r * v + ib] { ib = j }
            }
            if ia == ib { agree += 1 }
        }
        report["top1_agreement"] = Double(agree) / Double(inputs.count)
        report["positions"] = inputs.count
        report["model"] = model
        report["reference"] = reference
        report["task"] = task
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: data, as: UTF8.self))
    }
}
