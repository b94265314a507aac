// `ocellus run`: one image, one Florence-2 task, by hand.
import ArgumentParser
import Capture
import Compute
import Daemon
import Florence2
import Foundation


struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a Florence-2 task on one image (JPEG, PNG or PPM) and print the result.")

    @Option(name: .long, help: "The model file (.gguf, from Quantization/convert.py).")
    var model: String

    @Option(name: .long, help: "The task token, e.g. '<CAPTION>', '<OD>', '<CAPTION_TO_PHRASE_GROUNDING>'.")
    var task: String

    @Option(name: .long, help: "The task's input text (phrases, or a region as four <loc_N> tokens).")
    var text: String?

    @Option(name: .long, help: "int8 or fp32: must match how the file was converted (ocellus.precision).")
    var precision: String?

    @Option(name: .customLong("num-beams"), help: "Beams (default: the model's generation config, else 3).")
    var numBeams: Int?

    @Option(name: .customLong("max-new-tokens"), help: "Generated tokens at most (default 256).")
    var maxNewTokens = 256

    @Option(name: .customLong("min-new-tokens"), help: "End of sequence is banned before this many tokens (default 0).")
    var minNewTokens = 0

    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("budget-mb"), help: "Refuse to load when the memory plan exceeds this many MiB.")
    var budgetMB: Int?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    @Option(name: .long, help: "Write the image with the result drawn on it (boxes, polygons, labels) to this JPEG file.")
    var draw: String?

    @Argument(help: "The image file.")
    var image: String

    func run() throws {
        do {
            try execute()
        } catch let e as ValidationError {
            throw e
        } catch {
            FileHandle.standardError.write(Data("ocellus run: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func execute() throws {
        let task = try Florence2Task(token: self.task)
        let picture = try ImageFile.read(path: image)
        let threadCount = threads ?? ProcessInfo.processInfo.activeProcessorCount
        let probe = try GGUFFile(path: model)
        let config = try Florence2Config(file: probe)
        if let want = precision {
            guard want == "int8" || want == "fp32" else { throw ValidationError("--precision takes int8 or fp32, not '\(want)'") }
            let have = (try probe.stringIfPresent("ocellus.precision")) ?? "unknown"
            guard have == want else {
                throw ValidationError("\(model) holds \(have) weights; convert the checkpoint with `python3 Quantization/convert.py HF_DIR OUT.gguf --precision \(want)`")
            }
        }
        var limits = Florence2Limits(config: config, threads: threadCount)
        limits.maxNewTokens = maxNewTokens
        if let b = numBeams { limits.numBeams = b }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let file = try Florence2ModelFile(path: model, limits: limits, threads: threadCount, budgetBytes: budgetMB.map { $0 << 20 })
        let engine = try Florence2Model(file: file, pool: WorkerPool(threads: threadCount))
        let loadMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        var p = GenerationParameters(config: config.generation, maxNewTokens: maxNewTokens)
        p.numBeams = limits.numBeams
        p.minNewTokens = minNewTokens
        let t1 = DispatchTime.now().uptimeNanoseconds
        let out = try engine.run(image: picture, task: task, text: text, parameters: p)
        let totalMs = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e6
        if let drawPath = draw {
            Overlay(image: picture).draw(out.result.output)
            try ImageFile.writeJPEG(picture, path: drawPath, quality: 92)
        }
        Florence2Model.profileReport()
        let rss = peakRSSBytes()
        if json {
            var obj: [String: Any] = [
                "task": task.rawValue, "prompt": out.prompt, "text": out.text,
                "token_ids": out.tokenIds.map(Int.init),
                "image": ["path": image, "width": picture.width, "height": picture.height],
                "model": ["path": model, "precision": (try? probe.stringIfPresent("ocellus.precision")) as Any? ?? NSNull(),
                          "kernels": Kernels.variant, "threads": threadCount, "beams": p.numBeams],
                "timings_ms": ["load": loadMs, "preprocess": out.timings.preprocessMs, "vision": out.timings.visionMs,
                               "projector": out.timings.projectorMs, "encoder": out.timings.encoderMs,
                               "cross_kv": out.timings.crossKVMs, "decode": out.timings.decodeMs,
                               "decode_steps": out.timings.decodeSteps, "total": totalMs],
                "peak_rss_bytes": rss,
                "memory_plan": ["weights": file.plan.weightBytes, "arena": file.plan.arenaBytes, "kv_cache": file.plan.kvCacheBytes],
            ]
            let resultData = try JSONEncoder().encode(out.result)
            obj["result"] = try JSONSerialization.jsonObject(with: resultData)
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("task:    \(task.rawValue)")
            print("text:    \(out.text)")
            let resultData = try JSONEncoder().encode(out.result)
            print("result:  \(String(decoding: resultData, as: UTF8.self))")
            print(String(format: "time:    %.1f ms (preprocess %.1f, vision %.1f, projector %.1f, encoder %.1f, cross K/V %.1f, decode %.1f for %d steps); load %.1f ms",
                         totalMs, out.timings.preprocessMs, out.timings.visionMs, out.timings.projectorMs, out.timings.encoderMs,
                         out.timings.crossKVMs, out.timings.decodeMs, out.timings.decodeSteps, loadMs))
            print("memory:  peak RSS \(MemoryPlan.format(rss)); plan \(MemoryPlan.format(file.plan.totalBytes))")
        }
    }

    private func peakRSSBytes() -> Int {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Int(u.ru_maxrss) * 1024
    }
}
