package dev.flotilla.cli;

import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExitStatus;
import java.io.PrintStream;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

@Command(name = "exec", mixinStandardHelpOptions = true,
    description = {"Run a command in a running sandbox. Its stdout and stderr stream to yours as "
        + "they come; the CLI exits with the command's exit code (128+N if signal N ended it).",
        "Put the command after `--` when it has options of its own: exec ID -- ls -la",
        "With -d the command runs in the background: the CLI prints its process id and exits 0; "
            + "`ps`, `attach` and `kill` take that id.",
        "With -i the CLI's stdin goes to the command (its end ends the command's stdin); with -it the command "
            + "gets a terminal sized as yours, which is in raw mode meanwhile (Ctrl-C goes to the command) and "
            + "follows your window's size: exec -it ID -- sh"})
final class ExecCommand extends TimedCommand {
  @Option(names = {"-e", "--env"}, paramLabel = "KEY=VALUE",
      description = "An environment variable for the command; repeatable.")
  List<String> env;

  @Option(names = {"-w", "--workdir"}, paramLabel = "DIR",
      description = "Working directory in the sandbox.")
  String workdir;

  @Option(names = {"-u", "--user"}, paramLabel = "USER[:GROUP]",
      description = "Run as this user (a name or uid, optionally :group or :gid) of the sandbox's image "
          + "(default: the image's User, else root).")
  String user;

  @Option(names = {"-d", "--detach"},
      description = "Run in the background and print the process's id; its output is kept in the sandbox "
          + "(the most recent 1 MiB) for `attach`.")
  boolean detach;

  @Option(names = {"-i", "--interactive"},
      description = "Send the CLI's stdin to the command while it runs.")
  boolean interactive;

  @Option(names = {"-t", "--tty"},
      description = "Run the command on a terminal (with -i; needs one on stdin). Its stdout and stderr are then one stream.")
  boolean tty;

  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  @Parameters(index = "1..*", arity = "1..*", paramLabel = "CMD",
      description = "The command and its arguments.")
  List<String> command;

  @Override
  void validate() {
    envMap();
    if (detach && (interactive || tty)) throw new TypeConversionException("-d runs in the background: it takes no -i or -t");
    if (tty && !interactive) throw new TypeConversionException("-t needs -i: a terminal is typed into (use -it)");
  }

  private Map<String, String> envMap() {
    try {
      return ArgParsers.labels(env);
    } catch (TypeConversionException e) {
      throw new TypeConversionException(e.getMessage().replace("label", "--env"));
    }
  }

  ExecRequest request() {
    ExecRequest.Builder req = ExecRequest.newBuilder()
        .setSandboxId(id)
        .addAllArgv(command)
        .putAllEnv(envMap());
    if (workdir != null) req.setWorkingDir(workdir);
    if (user != null) req.setUser(user);
    return req.build();
  }

  dev.flotilla.api.v1.ExecInteractiveStart.Builder interactiveStart() {
    ExecRequest r = request();
    return dev.flotilla.api.v1.ExecInteractiveStart.newBuilder().setSandboxId(r.getSandboxId()).addAllArgv(r.getArgvList())
        .putAllEnv(r.getEnvMap()).setWorkingDir(r.getWorkingDir()).setUser(r.getUser()).setTty(tty);
  }

  dev.flotilla.api.v1.StartProcessRequest startRequest() {
    ExecRequest r = request();
    return dev.flotilla.api.v1.StartProcessRequest.newBuilder().setSandboxId(r.getSandboxId()).addAllArgv(r.getArgvList())
        .putAllEnv(r.getEnvMap()).setWorkingDir(r.getWorkingDir()).setUser(r.getUser()).build();
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    if (detach) {
      ctx.out().println(client.call(SandboxServiceMethods.START_PROCESS, startRequest(), id).getId());
      return ExitCodes.OK;
    }
    if (interactive) return ExecSession.run(client, ctx, interactiveStart());
    ExitStatus[] exit = {null};
    PrintStream out = ctx.out();
    PrintStream err = ctx.err();
    client.stream(SandboxServiceMethods.EXEC, request(), id, msg -> {
      switch (msg.getKindCase()) {
        case STDOUT -> Output.writeLive(out, msg.getStdout().toByteArray());
        case STDERR -> Output.writeLive(err, msg.getStderr().toByteArray());
        case EXIT -> exit[0] = msg.getExit();
        default -> { } // a kind added to the API later: nothing this CLI can show
      }
    });
    if (exit[0] == null) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED,
          "the node ended the exec of " + id + " without an exit status");
    }
    return exitCode(exit[0]);
  }

  /** The shell's convention: the code, or 128 + the signal that ended the process. */
  static int exitCode(ExitStatus status) {
    return status.getSignal() != 0 ? 128 + status.getSignal() : status.getExitCode();
  }
}
