package dev.flotilla.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Supplier;
import java.util.logging.LogManager;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.TypeConversionException;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * {@code flotilla}: the node ({@code flotilla node}) and the client commands in one jar. Client
 * commands print results on stdout, and any failure as one {@code flotilla: ...} line on stderr
 * with the exit codes in {@link ExitCodes}; no stack traces unless FLOTILLA_DEBUG is set.
 */
@Command(name = "flotilla", mixinStandardHelpOptions = true,
    versionProvider = Cli.Version.class,
    description = "Flotilla: sandboxes on a cluster of nodes.",
    footer = {"", "Exit codes: 0 ok, 1 the node refused or failed the request, 2 usage error, "
        + "3 no node reachable or it did not answer in time; exec exits with the command's code."})
public final class Cli implements Callable<Integer> {
  /** In the order `flotilla --help` lists them. */
  private static final Map<String, Supplier<Object>> COMMANDS = new LinkedHashMap<>();

  static {
    COMMANDS.put("node", NodeCommand::new);
    COMMANDS.put("create", CreateCommand::new);
    COMMANDS.put("ls", ListCommand::new);
    COMMANDS.put("get", GetCommand::new);
    COMMANDS.put("exec", ExecCommand::new);
    COMMANDS.put("logs", LogsCommand::new);
    COMMANDS.put("ps", ProcessCommands.Ps::new);
    COMMANDS.put("attach", ProcessCommands.Attach::new);
    COMMANDS.put("kill", ProcessCommands.Kill::new);
    COMMANDS.put("stop", LifecycleCommands.Stop::new);
    COMMANDS.put("start", LifecycleCommands.Start::new);
    COMMANDS.put("pause", LifecycleCommands.Pause::new);
    COMMANDS.put("resume", LifecycleCommands.Resume::new);
    COMMANDS.put("suspend", LifecycleCommands.Suspend::new);
    COMMANDS.put("fork", ForkCommand::new);
    COMMANDS.put("rm", LifecycleCommands.Remove::new);
    COMMANDS.put("set-timeout", LifecycleCommands.SetTimeout::new);
    COMMANDS.put("resize", ResizeCommand::new);
    COMMANDS.put("watch", WatchCommand::new);
    COMMANDS.put("events", EventsCommand::new);
    COMMANDS.put("fs", FsCommands::new);
    COMMANDS.put("cp", CpCommand::new);
    COMMANDS.put("port-forward", PortForwardCommand::new);
    COMMANDS.put("image", ImageCommands::new);
    COMMANDS.put("template", TemplateCommands::new);
    COMMANDS.put("nodes", ClusterCommands.Nodes::new);
    COMMANDS.put("drain", ClusterCommands.Drain::new);
    COMMANDS.put("dev-cluster", DevClusterCommand::new);
    COMMANDS.put("help", CommandLine.HelpCommand::new);
  }

  @Mixin ClientOptions options;
  @Mixin CallTimeout timeout;
  @Spec CommandSpec spec;

  private final CliContext context;

  public Cli(CliContext context) {
    this.context = context;
  }

  CliContext context() {
    return context;
  }

  public static void main(String[] args) {
    if (args.length > 0 && args[0].equals("node")) {
      // The node owns the JVM from here: it keeps running after main returns.
      NodeCommand.start(Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    CliContext ctx = new CliContext(System.getenv(), Path.of("").toAbsolutePath(), System.out,
        System.err);
    if (ctx.env(CliContext.ENV_DEBUG) == null) quietLibraryLogging();
    int code = new Cli(ctx).run(args);
    System.out.flush();
    System.err.flush();
    System.exit(code);
  }

  /** Runs one command line and returns its exit code; never throws. */
  public int run(String... args) {
    CommandLine cl = new CommandLine(this);
    // Picocli reads every registered command's annotations up front; a client command's start-up
    // time matters, so when the command is known only that one is registered.
    String command = commandName(args);
    if (command != null && !command.equals("help")) {
      cl.addSubcommand(command, COMMANDS.get(command).get());
    } else {
      COMMANDS.forEach((name, create) -> cl.addSubcommand(name, create.get()));
    }
    cl.setOut(new PrintWriter(context.out(), true));
    cl.setErr(new PrintWriter(context.err(), true));
    // `exec ID -- echo @x` must pass "@x" through, not read a file named x
    cl.setExpandAtFiles(false);
    cl.setCaseInsensitiveEnumValuesAllowed(true);
    cl.setParameterExceptionHandler(this::usageError);
    cl.setExecutionExceptionHandler((ex, commandLine, parseResult) -> failed(ex, commandLine));
    return cl.execute(args);
  }

  /** {@code flotilla} alone: what there is to do. */
  @Override
  public Integer call() {
    spec.commandLine().usage(context.err());
    return ExitCodes.USAGE;
  }

  /** The command's name if it is one of ours, skipping the root's options; else null. */
  static String commandName(String[] args) {
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (a.equals("--endpoint") || a.equals("--token") || a.equals("--timeout")) {
        i++; // its value
      } else if (!a.startsWith("-")) {
        return COMMANDS.containsKey(a) ? a : null;
      }
    }
    return null;
  }

  private int usageError(ParameterException ex, String[] args) {
    CommandLine cmd = ex.getCommandLine();
    String hint = " (see `" + cmd.getCommandSpec().qualifiedName() + " --help`)";
    if (ex instanceof UnmatchedArgumentException u && u.isUnknownOption()
        && cmd.getCommand() instanceof ExecCommand) {
      hint = " (put the command after `--`: flotilla exec ID -- CMD ARGS...)";
    }
    String message = lowerFirst(ex.getMessage().strip());
    if (ex instanceof UnmatchedArgumentException u && !u.isUnknownOption()
        && cmd.getCommand() instanceof Cli && !u.getUnmatched().isEmpty()) {
      message = "unknown command '" + u.getUnmatched().get(0) + "'";
    }
    context.err().println("flotilla: " + message + hint);
    return ExitCodes.USAGE;
  }

  private int failed(Exception ex, CommandLine cmd) {
    if (ex instanceof CliFailure f) {
      if (f.getMessage() != null) context.err().println("flotilla: " + f.getMessage());
      return f.exitCode();
    }
    if (ex instanceof TypeConversionException) {
      context.err().println("flotilla: " + ex.getMessage() + " (see `"
          + cmd.getCommandSpec().qualifiedName() + " --help`)");
      return ExitCodes.USAGE;
    }
    context.err().println("flotilla: unexpected error: " + ex
        + (context.env(CliContext.ENV_DEBUG) == null ? " (set FLOTILLA_DEBUG=1 for details)" : ""));
    if (context.env(CliContext.ENV_DEBUG) != null) ex.printStackTrace(context.err());
    return ExitCodes.REQUEST_FAILED;
  }

  private static String lowerFirst(String s) {
    if (s.length() > 1 && Character.isUpperCase(s.charAt(0)) && !Character.isUpperCase(s.charAt(1))) {
      return s.substring(0, 1).toLowerCase(Locale.ROOT) + s.substring(1);
    }
    return s;
  }

  /**
   * grpc-java logs through java.util.logging (to stderr by default) and Netty would bring up
   * SLF4J and Logback: both would put lines on stderr besides ours and cost start-up time.
   */
  private static void quietLibraryLogging() {
    LogManager.getLogManager().reset();
    io.grpc.netty.shaded.io.netty.util.internal.logging.InternalLoggerFactory.setDefaultFactory(
        io.grpc.netty.shaded.io.netty.util.internal.logging.JdkLoggerFactory.INSTANCE);
  }

  static final class Version implements IVersionProvider {
    @Override
    public String[] getVersion() {
      String v = Cli.class.getPackage().getImplementationVersion();
      return new String[] {"flotilla " + (v == null ? "(development build)" : v)};
    }
  }
}
