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

    @Option(name: .long, help: "Task tokens, comma-separated (tasks without input only); every image runs every task.")
    var task = "<CAPTION>"

    @Option(name: .long, help: "Tokens the reference generates (forced with min-new-tokens) and both models are scored on.")
    var tokens = 20

    @Option(name: .long, help: "Worker threads.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Argument(help: "The image files.")
    var images: [String]

    func run() throws {
        let tasks = try task.split(separator: ",").map { try Florence2Task(token: String($0).trimmingCharacters(in: .whitespaces)) }
        let pool = WorkerPool(threads: threads)
        func load(_ path: String) throws -> Florence2Model {
            let config = try Florence2Config(file: GGUFFile(path: path))
            var limits = Florence2Limits(config: config, threads: threads)
            limits.maxNewTokens = tokens
            limits.numBeams = 1
            return try Florence2Model(file: Florence2ModelFile(path: path, limits: limits, threads: threads, budgetBytes: nil), pool: pool)
        }
        let test = try load(model), ref = try load(reference)
        let v = ref.file.config.text.vocabSize
        let scratch = Arena(capacity: Arena.aligned(2 * tokens * v * 4) + (32 << 20))
        var stageNum: [String: Double] = [:], stageDen: [String: Double] = [:]
        var logitNum = 0.0, logitDen = 0.0, agree = 0, positions = 0
        var perCase: [[String: Any]] = []
        for path in images {
            let picture = try ImageFile.read(path: path)
            for t in tasks {
                let mark = scratch.mark()
                defer { scratch.reset(to: mark) }
                let ids = ref.promptIds(try t.prompt())
                var refStages: [String: [Float]] = [:], testStages: [String: [Float]] = [:]
                let pixels = try ref.processor.process(picture, arena: scratch)
                try ref.encode(pixels: pixels, promptIds: ids) { k, x in refStages[k] = x.toArray() }
                var p = GenerationParameters(config: ref.file.config.generation, maxNewTokens: tokens)
                p.numBeams = 1
                p.minNewTokens = tokens
                let inputs = Array(try ref.generate(p).dropLast())
                let refLogits = try scratch.tensor(Shape(inputs.count, v))
                try ref.teacherForcedLogits(decoderIds: inputs, into: refLogits)
                try test.encode(pixels: pixels, promptIds: ids) { k, x in testStages[k] = x.toArray() }
                let testLogits = try scratch.tensor(Shape(inputs.count, v))
                try test.teacherForcedLogits(decoderIds: inputs, into: testLogits)
                for (k, r) in refStages {
                    let a = testStages[k] ?? []
                    for i in 0..<min(a.count, r.count) {
                        let d = Double(a[i]) - Double(r[i])
                        stageNum[k, default: 0] += d * d
                        stageDen[k, default: 0] += Double(r[i]) * Double(r[i])
                    }
                }
                let a = testLogits.toArray(), b = refLogits.toArray()
                var caseAgree = 0
                for row in 0..<inputs.count {
                    var ia = 0, ib = 0
                    for j in 0..<v {
                        let d = Double(a[row * v + j]) - Double(b[row * v + j])
                        logitNum += d * d
                        logitDen += Double(b[row * v + j]) * Double(b[row * v + j])
                        if a[row * v + j] > a[row * v + ia] { ia = j }
                        if b[row * v + j] > b[row * v + ib] { ib = j }
                    }
                    if ia == ib { caseAgree += 1 }
                }
                agree += caseAgree
                positions += inputs.count
                perCase.append(["image": path, "task": t.rawValue, "positions": inputs.count,
                                "top1_agreement": Double(caseAgree) / Double(max(1, inputs.count))])
            }
        }
        var report: [String: Any] = [:]
        for k in stageNum.keys.sorted() { report["nmse_" + k] = stageDen[k]! > 0 ? stageNum[k]! / stageDen[k]! : stageNum[k]! }
        report["nmse_logits"] = logitDen > 0 ? logitNum / logitDen : logitNum
        report["top1_agreement"] = Double(agree) / Double(max(1, positions))
        report["positions"] = positions
        report["cases"] = perCase
        report["model"] = model
        report["reference"] = reference
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: data, as: UTF8.self))
    }
}
