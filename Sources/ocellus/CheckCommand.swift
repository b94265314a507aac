// `ocellus check CONFIG` (issue 5): validates a daemon configuration file and the files it names,
// printing "ok" with a summary, or every error with its key path.
import ArgumentParser
import Daemon
import Foundation

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate an ocellusd configuration file and the files it names (model, password, TLS, images).",
        discussion: """
            Prints "ok" and a summary (node, broker, model, cameras and tasks) and exits 0, or prints \
            every error with its file position and key path (e.g. cameras.porch.tasks[1].text) and exits 1. \
            Warnings are printed either way and do not fail the check.
            """)

    @Argument(help: "The configuration file, e.g. /etc/ocellus/ocellus.yaml or Configs/demo.yaml.")
    var config: String

    func run() throws {
        let parsed: DaemonConfiguration
        do {
            parsed = try DaemonConfiguration.load(path: config)
        } catch let e as ConfigurationError {
            report(e.issues)
            throw ExitCode.failure
        }
        let check = ConfigurationCheck(parsed)
        if !check.errors.isEmpty {
            report(check.issues)
            throw ExitCode.failure
        }
        print("ok: \(config)")
        for line in check.summary { print("  \(line)") }
        for w in check.warnings { print("\(config):\(w)") }
    }

    /// Errors then warnings, one per line, then a count, on standard error.
    private func report(_ issues: [ConfigurationIssue]) {
        let errors = issues.filter { $0.severity == .error }, warnings = issues.filter { $0.severity == .warning }
        var text = ""
        for i in errors + warnings { text += "\(config):\(i)\n" }
        text += "\(errors.count) error\(errors.count == 1 ? "" : "s")\(warnings.isEmpty ? "" : ", \(warnings.count) warning\(warnings.count == 1 ? "" : "s")") in \(config)\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}
