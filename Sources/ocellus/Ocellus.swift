// `ocellus`: the tool people use by hand. Each subcommand lives in its own file.
import ArgumentParser

@main
struct Ocellus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocellus",
        abstract: "Run, benchmark and inspect the Ocellus vision-language engine by hand.",
        subcommands: [RunCommand.self, BenchCommand.self, InspectCommand.self, CaptureCommand.self, CheckCommand.self]
    )
}
