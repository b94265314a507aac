// `ocellus inspect` (issue 2).
import ArgumentParser

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Not built yet (issue 2).")

    func run() throws {
        throw ValidationError("'ocellus inspect' is not built yet (issue 2)")
    }
}
