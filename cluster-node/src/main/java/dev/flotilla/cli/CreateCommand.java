package dev.flotilla.cli;

import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "create", mixinStandardHelpOptions = true,
    description = {"Create a sandbox and start its first VM; prints the new sandbox's id.",
        "With a command after `--` (or --image-command) that process is the sandbox's main process: "
            + "when it exits the sandbox's VM ends with its status and the restart policy applies; "
            + "read its output with `flotilla logs ID`. Without one the sandbox waits for execs."})
final class CreateCommand extends ClientCommand {
  @Option(names = "--driver", paramLabel = "DRIVER",
      description = "process (the default) or qemu.")
  String driver;

  @Option(names = "--cpus", paramLabel = "N", converter = ArgParsers.CpusConverter.class,
      description = "vCPUs (default: the node's).")
  Integer cpus;

  @Option(names = "--memory", paramLabel = "MiB", converter = ArgParsers.MemoryConverter.class,
      description = "Memory in MiB (default: the node's).")
  Integer memoryMib;

  @Option(names = "--disk", paramLabel = "MiB", converter = ArgParsers.DiskConverter.class,
      description = "Cap of the sandbox's writable layer in MiB: writes past it fail with ENOSPC "
          + "inside the sandbox (default: the node's, 1024).")
  Integer diskMib;

  @Option(names = "--image", paramLabel = "REF",
      description = "The image the sandbox's root runs: [host[:port]/]repo[:tag|@sha256:digest] "
          + "(default: the node's busybox image). Pulled at create and pinned to its digest.")
  String image;

  @Option(names = "--image-command",
      description = "The main process is the image's Entrypoint and Cmd (needs --image; no command after --).")
  boolean imageCommand;

  @Parameters(arity = "0..*", paramLabel = "CMD",
      description = "The main process and its arguments, after `--`: create --image REF -- CMD ARGS...")
  List<String> command;

  @Option(names = "--label", paramLabel = "KEY=VALUE", description = "A label; repeatable.")
  List<String> labels;

  @Option(names = "--restart", paramLabel = "POLICY",
      converter = ArgParsers.RestartPolicyConverter.class,
      description = "always (default), on-failure or never.")
  RestartPolicy restart;

  @Option(names = "--request-id", paramLabel = "ID",
      converter = ArgParsers.RequestIdConverter.class,
      description = "Makes the create idempotent: a retry with the same id returns the same "
          + "sandbox.")
  String requestId;

  @Override
  void validate() {
    ArgParsers.labels(labels);
    if (imageCommand && command != null && !command.isEmpty()) {
      throw new picocli.CommandLine.TypeConversionException("give either --image-command or a command after --, not both");
    }
    if (imageCommand && image == null) {
      throw new picocli.CommandLine.TypeConversionException("--image-command runs an image's Entrypoint and Cmd: name the image with --image REF");
    }
  }

  CreateSandboxRequest request() {
    SandboxSpec.Builder spec = SandboxSpec.newBuilder().putAllLabels(ArgParsers.labels(labels));
    if (driver != null) spec.setDriver(driver);
    if (cpus != null) spec.setVcpus(cpus);
    if (memoryMib != null) spec.setMemoryMib(memoryMib);
    if (diskMib != null) spec.setDiskMib(diskMib);
    if (image != null) spec.setImage(image);
    if (restart != null) spec.setRestartPolicy(restart);
    if (command != null) spec.addAllCommand(command);
    CreateSandboxRequest.Builder req = CreateSandboxRequest.newBuilder().setSpec(spec).setImageCommand(imageCommand);
    if (requestId != null) req.setRequestId(requestId);
    return req.build();
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    Sandbox created = client.call(SandboxServiceMethods.CREATE_SANDBOX, request(), null);
    ctx.out().println(created.getId());
    return ExitCodes.OK;
  }
}
