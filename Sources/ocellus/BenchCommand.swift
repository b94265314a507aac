// `ocellus bench` (issue 2).
import ArgumentParser

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Not built yet (issue 2).")

    func run() throws {
        throw ValidationError("'ocellus bench' is not built yet (issue 2)")
    }
}
