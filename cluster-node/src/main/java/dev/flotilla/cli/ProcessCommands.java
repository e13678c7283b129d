package dev.flotilla.cli;

import dev.flotilla.api.v1.AttachProcessRequest;
import dev.flotilla.api.v1.ExitStatus;
import dev.flotilla.api.v1.ListProcessesRequest;
import dev.flotilla.api.v1.ListProcessesResponse;
import dev.flotilla.api.v1.ProcessInfo;
import dev.flotilla.api.v1.SignalProcessRequest;
import dev.flotilla.sandbox.protocol.Signals;
import java.io.PrintStream;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

/** ps, attach, kill: the background processes `exec -d` starts (and the sandbox's other processes). */
final class ProcessCommands {
  private ProcessCommands() {}

  /** attach and kill: a sandbox and one of its processes. */
  abstract static class OnProcess extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1", paramLabel = "PROCESS", description = "The process's id, as exec -d or ps printed it.")
    String process;
  }

  static final String[] COLUMNS = {"ID", "PID", "STATE", "EXIT", "OUTPUT", "AGE", "COMMAND"};

  @Command(name = "ps", mixinStandardHelpOptions = true,
      description = {"List a sandbox's processes, oldest first: background ones (exec -d), execs under way, "
          + "and the main process as `main`.",
          "Columns: ID (what attach and kill take), PID (inside the sandbox), STATE (running, exited), EXIT "
              + "(the exit code, or the signal that ended it, e.g. SIGTERM; - while running), OUTPUT (bytes of "
              + "buffered output so far; - when not attachable), AGE, COMMAND."})
  static final class Ps extends LifecycleCommands.OnSandbox {
    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
        converter = OutputFormat.Converter.class,
        description = "table (default) or json (an array of {id, pid, state, exit_code, signal, attachable, "
            + "output_bytes, started_at, argv, argv_truncated}).")
    OutputFormat output;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      ListProcessesResponse r = client.call(SandboxServiceMethods.LIST_PROCESSES,
          ListProcessesRequest.newBuilder().setSandboxId(id).build(), id);
      ctx.out().print(output == OutputFormat.JSON ? json(r.getProcessesList()) : table(r.getProcessesList(), Instant.now()));
      if (r.getTruncated()) ctx.err().println("flotilla: the sandbox has more processes than these " + r.getProcessesCount());
      return ExitCodes.OK;
    }
  }

  @Command(name = "attach", mixinStandardHelpOptions = true,
      description = {"Print a background process's output (exec -d) from an offset: stdout to yours, stderr to "
          + "yours, live until it ends; then exit with its exit code (128+N if signal N ended it), like exec.",
          "The sandbox keeps the most recent 1 MiB of each process's output. Ctrl-C (or a lost connection) "
              + "leaves the process running; attach again with --offset to read on where you stopped."})
  static final class Attach extends OnProcess {
    @Option(names = "--offset", paramLabel = "BYTES", defaultValue = "0",
        description = "Start at this many bytes of output (both channels counted); 0 (default): all that is kept. "
            + "Past the output's end: wait until it gets there.")
    long offset;

    @Override
    void validate() {
      if (offset < 0) throw new TypeConversionException("--offset must not be negative");
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      PrintStream out = ctx.out();
      PrintStream err = ctx.err();
      long[] next = {offset};
      ExitStatus[] exit = {null};
      AttachProcessRequest req = AttachProcessRequest.newBuilder().setSandboxId(id).setProcessId(process).setOffset(offset).build();
      try {
        // null: a NOT_FOUND may be the process's, and the node's reason says which
        client.stream(SandboxServiceMethods.ATTACH_PROCESS, req, null, msg -> {
          if (msg.getKindCase() == dev.flotilla.api.v1.AttachProcessResponse.KindCase.EXIT) {
            exit[0] = msg.getExit();
            return;
          }
          byte[] data = (msg.hasStderr() ? msg.getStderr() : msg.getStdout()).toByteArray();
          if (msg.getOffset() > next[0]) {
            err.println("flotilla: " + (msg.getOffset() - next[0]) + " bytes of output were dropped before they were read");
          }
          next[0] = msg.getOffset() + data.length;
          switch (msg.getKindCase()) {
            case STDOUT -> Output.writeLive(out, data);
            case STDERR -> Output.writeLive(err, data);
            default -> { } // a kind added to the API later: nothing this CLI can show
          }
        });
      } catch (CliFailure f) {
        if (f.getMessage() == null) throw f;
        throw new CliFailure(f.exitCode(), f.getMessage() + " (to read on: flotilla attach " + id + " " + process
            + " --offset " + next[0] + ")");
      }
      if (exit[0] == null) {
        throw new CliFailure(ExitCodes.REQUEST_FAILED, "the node ended the attach to " + process + " without an exit status");
      }
      return ExecCommand.exitCode(exit[0]);
    }
  }

  @Command(name = "kill", mixinStandardHelpOptions = true,
      description = {"Send a signal to one of a sandbox's processes (default TERM). Prints the process's id and "
          + "the signal sent; a process that has already ended is left alone."})
  static final class Kill extends OnProcess {
    @Parameters(index = "2", arity = "0..1", paramLabel = "SIGNAL", defaultValue = "TERM",
        description = "A name (TERM, KILL, INT, HUP, USR1, ...; SIG optional) or a number 1-64.")
    String signal;

    @Override
    void validate() {
      try {
        Signals.parse(signal);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      var r = client.call(SandboxServiceMethods.SIGNAL_PROCESS,
          SignalProcessRequest.newBuilder().setSandboxId(id).setProcessId(process).setSignal(signal).build(), null);
      ctx.out().println(process + " SIG" + Signals.name(r.getSignal()));
      return ExitCodes.OK;
    }
  }

  // ------------------------------------------------------------------------------ output

  static String table(List<ProcessInfo> processes, Instant now) {
    List<String[]> rows = new ArrayList<>();
    rows.add(COLUMNS);
    for (ProcessInfo p : processes) {
      rows.add(new String[] {
          Names.oneLine(p.getId()), Long.toString(p.getPid()), p.getRunning() ? "running" : "exited",
          p.getRunning() || !p.hasExit() ? "-" : exit(p.getExit()),
          p.getAttachable() ? Long.toUnsignedString(p.getOutputBytes()) : "-",
          p.hasStartedAt() ? SandboxText.age(Names.instant(p.getStartedAt()), now) : "-",
          Names.oneLine(Names.argv(p.getArgvList())) + (p.getArgvTruncated() ? "..." : "")});
    }
    return SandboxText.columns(rows);
  }

  /** The exit code, or the signal that ended it (SIGTERM). */
  static String exit(ExitStatus e) {
    return e.getSignal() != 0 ? "SIG" + Signals.name(e.getSignal()) : Integer.toString(e.getExitCode());
  }

  static String json(List<ProcessInfo> processes) {
    if (processes.isEmpty()) return "[]\n";
    StringBuilder b = new StringBuilder("[\n");
    for (int i = 0; i < processes.size(); i++) {
      ProcessInfo p = processes.get(i);
      boolean exited = !p.getRunning() && p.hasExit();
      b.append("  {\n");
      b.append("    \"id\": ").append(SandboxJson.str(p.getId())).append(",\n");
      b.append("    \"pid\": ").append(p.getPid()).append(",\n");
      b.append("    \"state\": ").append(SandboxJson.str(p.getRunning() ? "running" : "exited")).append(",\n");
      b.append("    \"exit_code\": ").append(exited && p.getExit().getSignal() == 0 ? Integer.toString(p.getExit().getExitCode()) : "null")
          .append(",\n");
      b.append("    \"signal\": ").append(exited && p.getExit().getSignal() != 0 ? Integer.toString(p.getExit().getSignal()) : "null")
          .append(",\n");
      b.append("    \"attachable\": ").append(p.getAttachable()).append(",\n");
      b.append("    \"output_bytes\": ").append(p.getAttachable() ? Long.toUnsignedString(p.getOutputBytes()) : "null").append(",\n");
      b.append("    \"started_at\": ").append(p.hasStartedAt() ? SandboxJson.str(Names.rfc3339(p.getStartedAt())) : "null").append(",\n");
      b.append("    \"argv\": [");
      for (int j = 0; j < p.getArgvCount(); j++) b.append(j == 0 ? "" : ", ").append(SandboxJson.str(p.getArgv(j)));
      b.append("],\n");
      b.append("    \"argv_truncated\": ").append(p.getArgvTruncated()).append("\n");
      b.append(i + 1 < processes.size() ? "  },\n" : "  }\n");
    }
    return b.append("]\n").toString();
  }
}
