package dev.flotilla.cli;

import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.StartSandboxRequest;
import dev.flotilla.api.v1.StopSandboxRequest;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/**
 * stop, start, pause, resume, rm: one sandbox id in, one line out. The lifecycle calls print the
 * id and the phase the node answered with (e.g. {@code sb-1 STOPPING}); rm prints the id.
 */
final class LifecycleCommands {
  private LifecycleCommands() {}

  abstract static class OnSandbox extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    static int print(CliContext ctx, Sandbox s) {
      ctx.out().println(s.getId() + " " + Names.phase(s));
      return ExitCodes.OK;
    }
  }

  @Command(name = "set-timeout", mixinStandardHelpOptions = true,
      description = {"Make the sandbox end DURATION from now (e.g. 30m, 2h; 0: never), as its create's "
          + "--on-timeout says (deleted unless it says stop). Prints the id and when it ends."})
  static final class SetTimeout extends OnSandbox {
    @Parameters(index = "1", paramLabel = "DURATION", converter = ArgParsers.DurationOrZeroConverter.class,
        description = "From now; 0 removes the timeout.")
    java.time.Duration timeout;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      Sandbox s = client.call(SandboxServiceMethods.SET_TIMEOUT, dev.flotilla.api.v1.SetTimeoutRequest.newBuilder().setId(id)
          .setTimeout(CreateCommand.proto(timeout)).build(), id);
      ctx.out().println(s.getId() + " " + (s.hasExpiresAt() ? "expires " + Names.rfc3339Millis(s.getExpiresAt()) : "never expires"));
      return ExitCodes.OK;
    }
  }

  @Command(name = "stop", mixinStandardHelpOptions = true,
      description = "Stop a sandbox's VM; it stays stopped (no restart) until `start`.")
  static final class Stop extends OnSandbox {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return print(ctx, client.call(SandboxServiceMethods.STOP_SANDBOX,
          StopSandboxRequest.newBuilder().setId(id).build(), id));
    }
  }

  @Command(name = "start", mixinStandardHelpOptions = true,
      description = "Start a stopped or failed sandbox again (a new incarnation).")
  static final class Start extends OnSandbox {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return print(ctx, client.call(SandboxServiceMethods.START_SANDBOX,
          StartSandboxRequest.newBuilder().setId(id).build(), id));
    }
  }

  @Command(name = "pause", mixinStandardHelpOptions = true,
      description = "Pause a running sandbox's VM.")
  static final class Pause extends OnSandbox {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return print(ctx, client.call(SandboxServiceMethods.PAUSE_SANDBOX,
          PauseSandboxRequest.newBuilder().setId(id).build(), id));
    }
  }

  @Command(name = "resume", mixinStandardHelpOptions = true,
      description = "Resume a paused sandbox, or a suspended one from its snapshot (it continues where it was suspended).")
  static final class Resume extends OnSandbox {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return print(ctx, client.call(SandboxServiceMethods.RESUME_SANDBOX,
          ResumeSandboxRequest.newBuilder().setId(id).build(), id));
    }
  }

  @Command(name = "suspend", mixinStandardHelpOptions = true,
      description = {"Suspend a running sandbox: its memory, devices and writable disk are saved in the node's snapshot store and"
          + " its VM ends, so it holds no RAM. `resume`, `start` or any call into it (exec, cp, fs, ps, port-forward) resumes it"
          + " where it was.",
          "The process driver keeps the writable disk only: its processes and memory are lost."})
  static final class Suspend extends OnSandbox {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return print(ctx, client.call(SandboxServiceMethods.SUSPEND_SANDBOX,
          dev.flotilla.api.v1.SuspendSandboxRequest.newBuilder().setId(id).build(), id));
    }
  }

  @Command(name = "rm", mixinStandardHelpOptions = true,
      description = "Delete a sandbox: its VM is stopped and it is gone for good. Prints the id.")
  static final class Remove extends OnSandbox {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      ctx.out().println(client.call(SandboxServiceMethods.DELETE_SANDBOX,
          DeleteSandboxRequest.newBuilder().setId(id).build(), id).getId());
      return ExitCodes.OK;
    }
  }
}
