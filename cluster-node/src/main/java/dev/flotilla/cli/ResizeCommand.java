package dev.flotilla.cli;

import dev.flotilla.api.v1.ResizeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import java.time.Instant;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "resize", mixinStandardHelpOptions = true,
    description = {"Change a running (or paused) sandbox's memory and/or vCPUs in place, without a restart; "
        + "its next start keeps them. Prints the sandbox as `get` does.",
        "process: its cgroup limits change (memory not below what it uses). qemu: memory moves through its "
            + "balloon between 256 MiB and what it booted with; its vCPUs cannot change. Anything that cannot "
            + "change live is refused with the reason."})
final class ResizeCommand extends TimedCommand {
  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  @Option(names = "--memory", paramLabel = "MiB", converter = ArgParsers.MemoryConverter.class,
      description = "The new memory in MiB.")
  Integer memoryMib;

  @Option(names = "--cpus", paramLabel = "N", converter = ArgParsers.CpusConverter.class,
      description = "The new number of vCPUs.")
  Integer cpus;

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    if (memoryMib == null && cpus == null) {
      throw new CliFailure(ExitCodes.USAGE, "resize: say what to change: --memory MiB and/or --cpus N");
    }
    var req = ResizeSandboxRequest.newBuilder().setId(id);
    if (memoryMib != null) req.setMemoryMib(memoryMib);
    if (cpus != null) req.setVcpus(cpus);
    Sandbox s = client.call(SandboxServiceMethods.RESIZE_SANDBOX, req.build(), id);
    ctx.out().print(SandboxText.details(s, Instant.now()));
    return ExitCodes.OK;
  }
}
