// `ocellus run` (issue 3).
import ArgumentParser

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Not built yet (issue 3).")

    func run() throws {
        throw ValidationError("'ocellus run' is not built yet (issue 3)")
    }
}
