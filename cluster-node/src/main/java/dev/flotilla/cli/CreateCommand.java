package dev.flotilla.cli;

import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.IdleAction;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.TimeoutAction;
import dev.flotilla.api.v1.WatchSandboxRequest;
import java.time.Duration;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "create", mixinStandardHelpOptions = true,
    description = {"Create a sandbox, wait until it is RUNNING (or FAILED, with its reason), then print its id. "
        + "--no-wait prints the id as soon as the create is durable.",
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

  @Option(names = "--timeout", paramLabel = "DURATION", converter = ArgParsers.DurationConverter.class,
      description = "The sandbox ends this long after it is created, e.g. 30m, 2h (default: never); see --on-timeout. "
          + "(The deadline of the create call itself goes before the command name: flotilla --timeout 10s create ...)")
  Duration timeout;

  @Option(names = "--on-timeout", paramLabel = "ACTION",
      description = "What the end of --timeout does: delete (default) or stop.")
  String onTimeout;

  @Option(names = "--idle-timeout", paramLabel = "DURATION", converter = ArgParsers.DurationConverter.class,
      description = "After no exec, process, file or port-forward activity for this long, --on-idle applies (default: never).")
  Duration idleTimeout;

  @Option(names = "--on-idle", paramLabel = "ACTION",
      description = "What --idle-timeout does: stop (default), pause, or suspend (memory and disk saved, no RAM held; the next call resumes it).")
  String onIdle;

  @Option(names = "--network", paramLabel = "MODE",
      description = "none (default: loopback only) or egress (outbound connections through the node, with DNS).")
  String network;

  @Option(names = "--allow", paramLabel = "CIDR|HOST",
      description = "With --network egress: a destination it may reach; repeatable. Given any, only those.")
  List<String> allow;

  @Option(names = "--deny", paramLabel = "CIDR|HOST",
      description = "With --network egress: a destination it may never reach; repeatable; wins over --allow.")
  List<String> deny;

  @Option(names = "--no-wait",
      description = "Print the id as soon as the create is durable (phase CREATING) instead of waiting for RUNNING.")
  boolean noWait;

  @Option(names = "--wait-timeout", paramLabel = "DURATION", defaultValue = "5m",
      converter = ArgParsers.DurationConverter.class,
      description = "How long to wait for RUNNING (default 5m, e.g. 90s); past it the id is printed and the exit code is 1.")
  Duration waitTimeout;

  @Override
  void validate() {
    ArgParsers.labels(labels);
    if (imageCommand && command != null && !command.isEmpty()) {
      throw new picocli.CommandLine.TypeConversionException("give either --image-command or a command after --, not both");
    }
    if (network != null && !network.equals("none") && !network.equals("egress")) {
      throw new picocli.CommandLine.TypeConversionException("--network must be none or egress, not '" + network + "'");
    }
    if ((allow != null || deny != null) && !"egress".equals(network)) {
      throw new picocli.CommandLine.TypeConversionException("--allow and --deny need --network egress");
    }
    if (onTimeout != null && !onTimeout.equals("delete") && !onTimeout.equals("stop")) {
      throw new picocli.CommandLine.TypeConversionException("--on-timeout must be delete or stop, not '" + onTimeout + "'");
    }
    if (onIdle != null && !onIdle.equals("stop") && !onIdle.equals("pause") && !onIdle.equals("suspend")) {
      throw new picocli.CommandLine.TypeConversionException("--on-idle must be stop, pause or suspend, not '" + onIdle + "'");
    }
    if (onTimeout != null && timeout == null) {
      throw new picocli.CommandLine.TypeConversionException("--on-timeout needs --timeout DURATION");
    }
    if (onIdle != null && idleTimeout == null) {
      throw new picocli.CommandLine.TypeConversionException("--on-idle needs --idle-timeout DURATION");
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
    if (network != null || allow != null || deny != null) {
      dev.flotilla.api.v1.NetworkSpec.Builder n = dev.flotilla.api.v1.NetworkSpec.newBuilder();
      if (network != null) n.setMode(network);
      if (allow != null) n.addAllAllow(allow);
      if (deny != null) n.addAllDeny(deny);
      spec.setNetwork(n);
    }
    if (timeout != null) spec.setTimeout(proto(timeout));
    if ("stop".equals(onTimeout)) spec.setOnTimeout(TimeoutAction.TIMEOUT_STOP);
    if ("delete".equals(onTimeout)) spec.setOnTimeout(TimeoutAction.TIMEOUT_DELETE);
    if (idleTimeout != null) spec.setIdleTimeout(proto(idleTimeout));
    if ("pause".equals(onIdle)) spec.setOnIdle(IdleAction.IDLE_PAUSE);
    if ("suspend".equals(onIdle)) spec.setOnIdle(IdleAction.IDLE_SUSPEND);
    if ("stop".equals(onIdle)) spec.setOnIdle(IdleAction.IDLE_STOP);
    CreateSandboxRequest.Builder req = CreateSandboxRequest.newBuilder().setSpec(spec).setImageCommand(imageCommand);
    if (requestId != null) req.setRequestId(requestId);
    return req.build();
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    return printWhenSettled(client, ctx, client.call(SandboxServiceMethods.CREATE_SANDBOX, request(), null), noWait, waitTimeout);
  }

  /**
   * Prints a new sandbox's id once it is RUNNING (or settled otherwise), or at once with {@code noWait};
   * fails with why when it FAILED or did not settle in {@code waitTimeout}. Create and fork.
   */
  static int printWhenSettled(FlotillaClient client, CliContext ctx, Sandbox created, boolean noWait, Duration waitTimeout) {
    String id = created.getId();
    if (noWait || settled(created.getPhase())) {
      ctx.out().println(id);
      return ExitCodes.OK;
    }
    // WatchSandbox starts with the sandbox as it is now, so a change before the watch began is not missed.
    var waited = client.streamUntil(SandboxServiceMethods.WATCH_SANDBOX, WatchSandboxRequest.newBuilder().setId(id).build(), id,
        e -> settled(e.getSandbox().getPhase()), waitTimeout);
    // The id is printed whatever became of the sandbox, so that a script can inspect or remove it.
    ctx.out().println(id);
    Sandbox last = waited.last() == null ? created : waited.last().getSandbox();
    String why = last.getStatusMessage().isEmpty() ? "" : ": " + Names.oneLine(last.getStatusMessage());
    if (!waited.done()) {
      if (last.getPhase() == Phase.DELETED) throw new CliFailure(ExitCodes.REQUEST_FAILED, "sandbox " + id + " was deleted before it ran");
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "sandbox " + id + " is still " + Names.phase(last) + " after "
          + Durations.format(waitTimeout) + why + "; `flotilla get " + id + "` tells when it is RUNNING");
    }
    if (last.getPhase() == Phase.FAILED) throw new CliFailure(ExitCodes.REQUEST_FAILED, "sandbox " + id + " FAILED" + why);
    return ExitCodes.OK;
  }

  static com.google.protobuf.Duration proto(Duration d) {
    return com.google.protobuf.Duration.newBuilder().setSeconds(d.getSeconds()).setNanos(d.getNano()).build();
  }

  /** Past CREATING: running, or already ended (a main process that exited at once), or failed. */
  static boolean settled(Phase p) {
    return p == Phase.RUNNING || p == Phase.PAUSED || p == Phase.STOPPED || p == Phase.FAILED;
  }
}
