// `ocellus check` (issue 5).
import ArgumentParser

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Not built yet (issue 5).")

    func run() throws {
        throw ValidationError("'ocellus check' is not built yet (issue 5)")
    }
}
