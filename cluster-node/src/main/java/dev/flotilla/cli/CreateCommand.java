package dev.flotilla.cli;

import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "create", mixinStandardHelpOptions = true,
    description = "Create a sandbox and start its first VM; prints the new sandbox's id.")
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
  }

  CreateSandboxRequest request() {
    SandboxSpec.Builder spec = SandboxSpec.newBuilder().putAllLabels(ArgParsers.labels(labels));
    if (driver != null) spec.setDriver(driver);
    if (cpus != null) spec.setVcpus(cpus);
    if (memoryMib != null) spec.setMemoryMib(memoryMib);
    if (diskMib != null) spec.setDiskMib(diskMib);
    if (image != null) spec.setImage(image);
    if (restart != null) spec.setRestartPolicy(restart);
    CreateSandboxRequest.Builder req = CreateSandboxRequest.newBuilder().setSpec(spec);
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
