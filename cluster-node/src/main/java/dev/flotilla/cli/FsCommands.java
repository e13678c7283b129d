package dev.flotilla.cli;

import dev.flotilla.api.v1.FileInfo;
import dev.flotilla.api.v1.ListDirRequest;
import dev.flotilla.api.v1.ListDirResponse;
import dev.flotilla.api.v1.MakeDirRequest;
import dev.flotilla.api.v1.RemoveRequest;
import dev.flotilla.api.v1.RenameRequest;
import dev.flotilla.api.v1.StatRequest;
import dev.flotilla.api.v1.WatchDirRequest;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code flotilla fs ls|stat|mkdir|rm|mv|watch}: a running sandbox's files. Paths are absolute and
 * resolve inside the sandbox's root only; a link is never followed out of it. Copy files with
 * {@code flotilla cp}. Calls name no sandbox id for NOT_FOUND: the node's own text says whether
 * the sandbox or a path in it was not found.
 */
@Command(name = "fs", mixinStandardHelpOptions = true,
    description = {"Work with a running sandbox's files: ls, stat, mkdir, rm, mv, watch (copy them with `flotilla cp`).",
        "Paths are absolute inside the sandbox and never lead out of its root: .. stops at the root and a "
            + "symbolic link is not followed out of it."},
    subcommands = {FsCommands.Ls.class, FsCommands.Stat.class, FsCommands.Mkdir.class, FsCommands.Rm.class,
        FsCommands.Mv.class, FsCommands.Watch.class})
final class FsCommands extends CommandGroup {
  /** ListDir's deepest listing (the API's bound); {@code ls -R} without --depth. */
  static final int MAX_DEPTH = 16;

  static void checkAbsolute(List<String> paths) {
    for (String p : paths) {
      if (!p.startsWith("/")) throw new TypeConversionException("'" + p + "' is not an absolute path in the sandbox (e.g. /tmp/x)");
    }
  }

  /** {@code --mode 750}: permission bits in octal, at most 07777. */
  static final class OctalMode implements picocli.CommandLine.ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      try {
        int m = Integer.parseInt(value.strip(), 8);
        if (m >= 0 && m <= 07777) return m;
      } catch (NumberFormatException e) {
        // said below
      }
      throw new TypeConversionException("'" + value + "' is not a mode: give permission bits in octal, e.g. 0755");
    }
  }

  /**
   * Runs {@code each} for every path like coreutils do: a path the node refuses is reported and the
   * rest still run (exit 1 at the end); no node to ask (exit 3) ends at once.
   */
  static int eachPath(List<String> paths, CliContext ctx, Consumer<String> each) {
    int code = ExitCodes.OK;
    for (String p : paths) {
      try {
        each.accept(p);
      } catch (CliFailure f) {
        if (f.exitCode() != ExitCodes.REQUEST_FAILED || paths.size() == 1) throw f;
        ctx.err().println("flotilla: " + f.getMessage());
        code = ExitCodes.REQUEST_FAILED;
      }
    }
    return code;
  }

  @Command(name = "ls", mixinStandardHelpOptions = true,
      description = {"List directories of a running sandbox: one entry per line, relative to the directory, "
          + "\"/\" after a directory, \" -> TARGET\" after a symbolic link (listed, never entered).",
          "With several PATHs each listing starts with a \"PATH:\" line."})
  static final class Ls extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1..*", arity = "1..*", paramLabel = "PATH", description = "Absolute directory paths.")
    List<String> paths;

    @Option(names = {"-R", "--recursive"}, description = "Also the directories under it, depth first (down to "
        + MAX_DEPTH + " levels unless --depth says otherwise).")
    boolean recursive;

    @Option(names = "--depth", paramLabel = "N",
        description = "List N levels (1: the directory's own entries; at most " + MAX_DEPTH + "); implies -R when above 1.")
    Integer depth;

    @Option(names = "-l", description = "Long lines: type and mode, size, modification time (UTC), path.")
    boolean longFormat;

    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table", converter = OutputFormat.Converter.class,
        description = "text (default) or json (an array of {name, path, type, size, mode, modified, symlinkTarget}).")
    OutputFormat output;

    @Option(names = "--page-size", hidden = true, defaultValue = "0")
    int pageSize;

    @Override
    void validate() {
      checkAbsolute(paths);
      if (depth != null && (depth < 1 || depth > MAX_DEPTH)) {
        throw new TypeConversionException("--depth must be 1 to " + MAX_DEPTH + ", not " + depth);
      }
    }

    int levels() {
      return depth != null ? depth : recursive ? MAX_DEPTH : 1;
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return eachPath(paths, ctx, path -> {
        ListDirRequest.Builder req = ListDirRequest.newBuilder().setSandboxId(id).setPath(path).setDepth(levels())
            .setPageSize(pageSize);
        List<FileInfo> all = new ArrayList<>();
        boolean[] incomplete = {false};
        Pages.each(token -> client.call(SandboxServiceMethods.LIST_DIR, req.setPageToken(token).build(), null),
            ListDirResponse::getNextPageToken, page -> {
              all.addAll(page.getEntriesList());
              incomplete[0] |= page.getIncomplete();
            }, "listing");
        StringBuilder b = new StringBuilder();
        if (output == OutputFormat.JSON) {
          b.append(FsText.array(all));
        } else {
          if (paths.size() > 1) b.append(Names.oneLine(path)).append(":\n");
          for (FileInfo f : all) b.append(longFormat ? FsText.longLine(f) : FsText.name(f));
        }
        ctx.out().print(b);
        if (incomplete[0]) {
          ctx.err().println("flotilla: " + path + ": a directory held more entries than the sandbox lists from one; some are missing");
        }
      });
    }
  }

  @Command(name = "stat", mixinStandardHelpOptions = true,
      description = "Describe entries of a running sandbox, one line each: type and mode, size, modification time (UTC), "
          + "path (\" -> TARGET\" for a symbolic link).")
  static final class Stat extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1..*", arity = "1..*", paramLabel = "PATH", description = "Absolute paths.")
    List<String> paths;

    @Option(names = {"-L", "--dereference"}, description = "Describe what a symbolic link points to (inside the sandbox's root).")
    boolean follow;

    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table", converter = OutputFormat.Converter.class,
        description = "text (default) or json (an array, as fs ls -o json).")
    OutputFormat output;

    @Override
    void validate() {
      checkAbsolute(paths);
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      List<FileInfo> found = new ArrayList<>();
      int code = eachPath(paths, ctx, path -> {
        FileInfo f = client.call(SandboxServiceMethods.STAT,
            StatRequest.newBuilder().setSandboxId(id).setPath(path).setFollowLinks(follow).build(), null);
        if (output == OutputFormat.JSON) found.add(f);
        else ctx.out().print(FsText.longLine(f));
      });
      if (output == OutputFormat.JSON) ctx.out().print(FsText.array(found));
      return code;
    }
  }

  @Command(name = "mkdir", mixinStandardHelpOptions = true, description = "Make directories in a running sandbox.")
  static final class Mkdir extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1..*", arity = "1..*", paramLabel = "PATH", description = "Absolute paths.")
    List<String> paths;

    @Option(names = {"-p", "--parents"}, description = "Make missing parents too; an existing directory is no error.")
    boolean parents;

    @Option(names = {"-m", "--mode"}, paramLabel = "MODE", converter = OctalMode.class,
        description = "Permission bits in octal (default 0755).")
    Integer mode;

    @Override
    void validate() {
      checkAbsolute(paths);
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return eachPath(paths, ctx, path -> client.call(SandboxServiceMethods.MAKE_DIR, MakeDirRequest.newBuilder()
          .setSandboxId(id).setPath(path).setParents(parents).setMode(mode == null ? 0 : mode).build(), null));
    }
  }

  @Command(name = "rm", mixinStandardHelpOptions = true,
      description = "Remove entries of a running sandbox (a symbolic link itself, never its target).")
  static final class Rm extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1..*", arity = "1..*", paramLabel = "PATH", description = "Absolute paths.")
    List<String> paths;

    @Option(names = {"-r", "-R", "--recursive"}, description = "Remove directories and everything under them.")
    boolean recursive;

    @Override
    void validate() {
      checkAbsolute(paths);
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      return eachPath(paths, ctx, path -> client.call(SandboxServiceMethods.REMOVE,
          RemoveRequest.newBuilder().setSandboxId(id).setPath(path).setRecursive(recursive).build(), null));
    }
  }

  @Command(name = "mv", mixinStandardHelpOptions = true, description = "Rename an entry of a running sandbox.")
  static final class Mv extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1", paramLabel = "FROM", description = "The absolute path it has.")
    String from;

    @Parameters(index = "2", paramLabel = "TO", description = "The absolute path it gets.")
    String to;

    @Option(names = {"-f", "--force"}, description = "Replace an existing TO (else the rename fails).")
    boolean force;

    @Override
    void validate() {
      checkAbsolute(List.of(from, to));
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      client.call(SandboxServiceMethods.RENAME,
          RenameRequest.newBuilder().setSandboxId(id).setFrom(from).setTo(to).setOverwrite(force).build(), null);
      return ExitCodes.OK;
    }
  }

  @Command(name = "watch", mixinStandardHelpOptions = true,
      description = {"Print changes under a directory of a running sandbox as they happen, one line each: "
          + "created PATH, modified PATH, deleted PATH (relative to the directory), or \"lost N events\" when "
          + "changes came faster than they were read.",
          "\"watching PATH\" goes to stderr once the watch runs. Ends with Ctrl-C (exit 130), or when the directory "
              + "is removed (exit 0)."})
  static final class Watch extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
    String id;

    @Parameters(index = "1", paramLabel = "PATH", description = "An absolute directory path.")
    String path;

    @Option(names = {"-r", "-R", "--recursive"}, description = "Also the directories under it.")
    boolean recursive;

    @Override
    void validate() {
      checkAbsolute(List.of(path));
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      client.stream(SandboxServiceMethods.WATCH_DIR,
          WatchDirRequest.newBuilder().setSandboxId(id).setPath(path).setRecursive(recursive).build(), null, msg -> {
            if (msg.hasStarted()) {
              var s = msg.getStarted();
              ctx.err().println("watching " + Names.oneLine(s.getPath())
                  + (recursive ? " (" + s.getWatchedDirs() + " directories" + (s.getPartial() ? ", not all of them" : "") + ")" : ""));
            } else if (msg.hasEvent()) {
              Output.writeLive(ctx.out(), FsText.eventLine(msg.getEvent()).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            }
          });
      return ExitCodes.OK;
    }
  }
}
