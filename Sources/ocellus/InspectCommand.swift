// `ocellus inspect MODEL.gguf`: what a model file holds (header, every metadata key, every
// tensor, totals) and the memory plan, like `gguf-dump` but through our strict reader.
import ArgumentParser
import Compute
import Florence2
import Foundation

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print what a model file (GGUF v3) holds: metadata, tensors, totals and the memory plan."
    )

    @Argument(help: "The model file (.gguf).")
    var model: String

    @Option(name: .long, help: "Array items to show per metadata key.")
    var items = 8

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    @Option(name: .long, help: "Plan for this image size, WxH (default: the model's preprocessing size).")
    var imageSize: String?

    @Option(name: .long, help: "Plan for this many prompt tokens after the image (default 256).")
    var maxPromptTokens: Int?

    @Option(name: .long, help: "Plan for this many generated tokens (default 256).")
    var maxNewTokens: Int?

    @Option(name: .customLong("num-beams"), help: "Plan for this many beams (default: the model's generation config, else 3).")
    var numBeams: Int?

    @Option(name: .long, help: "Plan for this many worker threads (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("budget-mb"), help: "Check the plan against this budget in MiB.")
    var budgetMB: Int?

    func run() throws {
        let file: GGUFFile
        do {
            file = try GGUFFile(path: model)
        } catch let e as GGUFError {
            FileHandle.standardError.write(Data("ocellus inspect: \(e)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            print(try jsonReport(file))
        } else {
            print(textReport(file), terminator: "")
        }
    }

    // MARK: - Text

    private func textReport(_ f: GGUFFile) -> String {
        var out = ""
        func line(_ s: String = "") { out += s + "\n" }
        line("file:         \(f.path)")
        line("size:         \(f.fileSize) bytes (\(mib(f.fileSize)))")
        line("GGUF version: \(f.version)")
        line("alignment:    \(f.alignment)")
        line("tensor data:  at byte \(f.dataOffset)")
        line()

        line("metadata: \(f.metadata.count) keys")
        let keyWidth = f.metadata.map(\.key.count).max() ?? 0
        let typeWidth = f.metadata.map { $0.value.typeName.count }.max() ?? 0
        for (key, value) in f.metadata {
            line("  " + pad(key, keyWidth) + "  " + pad(value.typeName, typeWidth) + "  " + valueText(value))
        }
        line()

        line("tensors: \(f.tensorInfos.count)")
        let rows = f.tensorInfos.map { t in [t.name, t.type.description, t.shape.description, String(t.byteCount), String(t.offset)] }
        let header = ["name", "type", "shape", "bytes", "offset"]
        let widths = (0..<header.count).map { c in max(header[c].count, rows.map { $0[c].count }.max() ?? 0) }
        // Names, types and shapes left-aligned; bytes and offsets right-aligned.
        func row(_ r: [String]) -> String {
            "  " + (0..<r.count).map { c in c >= 3 ? padLeft(r[c], widths[c]) : pad(r[c], widths[c]) }.joined(separator: "  ")
        }
        line(row(header))
        for r in rows { line(row(r)) }
        line()

        line("totals:")
        for (type, count, bytes) in totals(f) {
            line("  \(pad(type.description, 4)) \(padLeft(String(count), 5)) tensors  \(padLeft(String(bytes), 12)) bytes (\(mib(bytes)))")
        }
        let all = f.tensorInfos.reduce(0) { $0 + $1.byteCount }
        line("  total weight bytes: \(all) (\(mib(all)))")
        line()

        for l in memoryPlanLines(for: f) { line(l) }
        return out
    }

    /// A value for the text listing: scalars as they are, arrays as count and the first items.
    private func valueText(_ v: GGUFValue) -> String {
        if case let .string(s) = v, s.count > 160 {
            return GGUFValue.string(String(s.prefix(160))).valueDescription + "... (\(s.utf8.count) bytes)"
        }
        guard case let .array(a) = v else { return v.valueDescription }
        let shown = a.prefix(items).map(\.valueDescription).joined(separator: ", ")
        return "(\(a.count) items) [\(shown)\(a.count > items ? ", ..." : "")]"
    }

    /// Tensor count and bytes per element type, in a fixed type order.
    private func totals(_ f: GGUFFile) -> [(GGMLType, Int, Int)] {
        GGMLType.allCases.compactMap { type in
            let ts = f.tensorInfos.filter { $0.type == type }
            return ts.isEmpty ? nil : (type, ts.count, ts.reduce(0) { $0 + $1.byteCount })
        }
    }

    // MARK: - Memory plan

    /// The memory-plan section for `f` under the limits given on the command line (the file's
    /// defaults otherwise), or the reason there is none.
    private func memoryPlanLines(for f: GGUFFile) -> [String] {
        let arch = (try? f.stringIfPresent("general.architecture")) ?? nil
        guard arch == "florence2" else {
            let reason = arch.map { "architecture '\($0)' has no memory plan" } ?? "no general.architecture string"
            return ["memory plan: (not available for this file: \(reason))"]
        }
        do {
            let config = try Florence2Config(file: f)
            var limits = Florence2Limits(config: config, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
            if let v = imageSize {
                let parts = v.lowercased().split(separator: "x").compactMap { Int($0) }
                guard parts.count == 2 else { return ["memory plan: --image-size wants WxH, got '\(v)'"] }
                limits.imageWidth = parts[0]
                limits.imageHeight = parts[1]
            }
            if let v = maxPromptTokens { limits.maxPromptTokens = v }
            if let v = maxNewTokens { limits.maxNewTokens = v }
            if let v = numBeams { limits.numBeams = v }
            let weights = f.tensorInfos.reduce(0) { $0 + $1.byteCount }
            let plan = try Florence2MemoryPlanner.plan(config: config, limits: limits, weightBytes: weights)
            var lines = ["memory plan: image \(limits.imageWidth)x\(limits.imageHeight), \(limits.maxPromptTokens) prompt tokens, "
                         + "\(limits.maxNewTokens) new tokens, \(limits.numBeams) beams, \(limits.threads) threads"]
            lines += plan.render().split(separator: "\n").map(String.init)
            if let mb = budgetMB {
                do { try plan.check(budget: mb << 20); lines.append("  fits the budget of \(mb) MiB") } catch { lines.append("  \(error)") }
            }
            return lines
        } catch {
            return ["memory plan: (not available for this file: \(error))"]
        }
    }

    // MARK: - JSON

    private func jsonReport(_ f: GGUFFile) throws -> String {
        let metadata: [[String: Any]] = f.metadata.map { key, value in
            var entry: [String: Any] = ["key": key, "type": value.typeName]
            if case let .array(a) = value {
                entry["count"] = a.count
                entry["items"] = a.prefix(items).map(jsonScalar)
            } else {
                entry["value"] = jsonScalar(value)
            }
            return entry
        }
        let tensors: [[String: Any]] = f.tensorInfos.map { t in
            ["name": t.name, "type": t.type.description, "shape": t.shape.array, "bytes": t.byteCount, "offset": t.offset]
        }
        let byType: [[String: Any]] = totals(f).map { type, count, bytes in ["type": type.description, "tensors": count, "bytes": bytes] }
        let report: [String: Any] = [
            "file": f.path, "size": f.fileSize, "version": Int(f.version), "alignment": f.alignment,
            "data_offset": f.dataOffset, "metadata": metadata, "tensors": tensors, "totals": byType,
            "total_weight_bytes": f.tensorInfos.reduce(0) { $0 + $1.byteCount },
            "memory_plan": memoryPlanLines(for: f),
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// A JSON-safe scalar (non-finite floats become strings, which JSON cannot hold as numbers).
    private func jsonScalar(_ v: GGUFValue) -> Any {
        switch v {
        case let .uint8(x): return Int(x)
        case let .int8(x): return Int(x)
        case let .uint16(x): return Int(x)
        case let .int16(x): return Int(x)
        case let .uint32(x): return Int(x)
        case let .int32(x): return Int(x)
        case let .uint64(x): return x <= UInt64(Int.max) ? Int(x) as Any : String(x)
        case let .int64(x): return Int(x)
        case let .float32(x): return x.isFinite ? Double(String(x))! as Any : String(x)  // shortest decimal, not the widened binary
        case let .float64(x): return x.isFinite ? x as Any : String(x)
        case let .bool(x): return x
        case let .string(s): return s
        case .array: return v.valueDescription
        }
    }

    // MARK: - Formatting

    private func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    private func padLeft(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
    private func mib(_ n: Int) -> String { String(format: "%.2f MiB", Double(n) / 1_048_576) }
}
