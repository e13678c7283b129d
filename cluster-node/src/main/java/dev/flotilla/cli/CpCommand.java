package dev.flotilla.cli;

import dev.flotilla.api.v1.ReadFileRequest;
import dev.flotilla.api.v1.StatRequest;
import dev.flotilla.api.v1.WriteFileHeader;
import dev.flotilla.api.v1.WriteFileRequest;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code flotilla cp SRC DST}: one file into or out of a running sandbox, over WriteFile and
 * ReadFile, streamed (never held in memory). Directories are not copied (tar through exec does it).
 */
@Command(name = "cp", mixinStandardHelpOptions = true,
    description = {"Copy a file into or out of a running sandbox: one side is ID:PATH (PATH absolute in the sandbox), "
        + "the other a local file, or - for stdin/stdout.",
        "A DST ending in / (or an existing local directory) keeps the source's file name. The file is streamed both ways; "
            + "a download is written to a temporary file next to DST and renamed once complete. Progress goes to stderr for "
            + "files of 16 MiB and more when stderr is a terminal, or always with --progress. Directories are not copied: "
            + "use `flotilla exec ID -- tar ...`. Waits up to 1h unless --timeout says otherwise."})
final class CpCommand extends TimedCommand {
  static final Duration COPY_TIMEOUT = Duration.ofHours(1);
  /** ID:PATH. A local file whose name has a colon is written ./name. */
  private static final Pattern REMOTE = Pattern.compile("([A-Za-z0-9][A-Za-z0-9_-]*):(.*)", Pattern.DOTALL);

  @Parameters(index = "0", paramLabel = "SRC", description = "ID:PATH, a local file, or - (stdin).")
  String src;

  @Parameters(index = "1", paramLabel = "DST", description = "ID:PATH, a local file or directory, or - (stdout).")
  String dst;

  @Option(names = {"-m", "--mode"}, paramLabel = "MODE", converter = FsCommands.OctalMode.class,
      description = "Into a sandbox: the file's permission bits in octal (default: the local file's, 0644 from stdin).")
  Integer mode;

  @Option(names = "--progress", description = "Print progress lines on stderr for large files even when it is not a terminal.")
  boolean progress;

  record Remote(String id, String path) {}

  static Remote remote(String arg) {
    Matcher m = REMOTE.matcher(arg);
    return m.matches() ? new Remote(m.group(1), m.group(2)) : null;
  }

  @Override
  void validate() {
    Remote from = remote(src);
    Remote to = remote(dst);
    if ((from == null) == (to == null)) {
      throw new TypeConversionException("exactly one of SRC and DST must be in a sandbox, written ID:PATH");
    }
    Remote r = from != null ? from : to;
    if (!r.path().startsWith("/")) {
      throw new TypeConversionException("'" + r.path() + "' is not an absolute path in the sandbox (e.g. " + r.id() + ":/tmp/x)");
    }
    if (from != null && from.path().endsWith("/")) throw new TypeConversionException("SRC must name a file, not a directory");
    if (to != null && !src.equals("-")) {
      Path local = Path.of(src);
      if (Files.isDirectory(local)) {
        throw new TypeConversionException(src + " is a directory: cp copies one file (use `flotilla exec ID -- tar ...` for a tree)");
      }
      if (!Files.isRegularFile(local)) throw new TypeConversionException(src + " is not a readable file");
    }
  }

  @Override
  Duration defaultTimeout() {
    return COPY_TIMEOUT;
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    Remote from = remote(src);
    return from != null ? download(client, ctx, from) : upload(client, ctx, remote(dst));
  }

  // ------------------------------------------------------------------------------ into the sandbox

  private int upload(FlotillaClient client, CliContext ctx, Remote to) {
    boolean stdin = src.equals("-");
    String name = stdin ? "stdin" : Path.of(src).getFileName().toString();
    String path = to.path().endsWith("/") ? to.path() + name : to.path();
    long total = -1;
    int bits = mode != null ? mode : 0;
    try (InputStream in = stdin ? ctx.in() : Files.newInputStream(Path.of(src))) {
      if (!stdin) {
        total = Files.size(Path.of(src));
        if (mode == null) bits = permissions(Path.of(src));
      }
      Upload.Progress p = new Upload.Progress(ctx, "copying", name, total, showProgress(ctx));
      WriteFileRequest header = WriteFileRequest.newBuilder()
          .setHeader(WriteFileHeader.newBuilder().setSandboxId(to.id()).setPath(path).setMode(bits)).build();
      client.clientStream(SandboxServiceMethods.WRITE_FILE, new Upload<>(header, in, b -> WriteFileRequest.newBuilder().setData(b).build(), p), null);
      return ExitCodes.OK;
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot read " + src + ": " + e.getMessage());
    } catch (UncheckedIOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot read " + src + ": " + e.getCause().getMessage());
    }
  }

  private static int permissions(Path file) throws IOException {
    int bits = 0;
    for (PosixFilePermission p : Files.getPosixFilePermissions(file)) bits |= 1 << (8 - p.ordinal());
    return bits;
  }

  // ------------------------------------------------------------------------------ out of the sandbox

  private int download(FlotillaClient client, CliContext ctx, Remote from) {
    String name = from.path().substring(from.path().lastIndexOf('/') + 1);
    boolean show = showProgress(ctx);
    // The size only matters for progress; scripts (no terminal) pay no extra call.
    long total = show ? client.call(SandboxServiceMethods.STAT,
        StatRequest.newBuilder().setSandboxId(from.id()).setPath(from.path()).setFollowLinks(true).build(), null).getSize() : -1;
    Upload.Progress p = new Upload.Progress(ctx, "copying", name, total, show);
    ReadFileRequest req = ReadFileRequest.newBuilder().setSandboxId(from.id()).setPath(from.path()).build();
    if (dst.equals("-")) {
      client.stream(SandboxServiceMethods.READ_FILE, req, null, chunk -> {
        Output.writeLive(ctx.out(), chunk.getData().toByteArray());
        p.add(chunk.getData().size());
      });
      return ExitCodes.OK;
    }
    Path target = Path.of(dst);
    if (dst.endsWith("/") || Files.isDirectory(target)) target = target.resolve(name);
    Path dir = target.toAbsolutePath().getParent();
    Path part;
    try {
      part = Files.createTempFile(dir, "." + target.getFileName(), ".flotilla-part");
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot write in " + dir + ": " + message(e));
    }
    boolean done = false;
    try (OutputStream out = Files.newOutputStream(part)) {
      client.stream(SandboxServiceMethods.READ_FILE, req, null, chunk -> {
        try {
          chunk.getData().writeTo(out);
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
        p.add(chunk.getData().size());
      });
      out.close();
      if (Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS)) {
        throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot write " + target + ": it is a directory");
      }
      Files.move(part, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      done = true;
      return ExitCodes.OK;
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot write " + target + ": " + message(e));
    } catch (UncheckedIOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot write " + target + ": " + message(e.getCause()));
    } finally {
      if (!done) {
        try {
          Files.deleteIfExists(part);
        } catch (IOException ignored) {
          // a leftover temporary file is all that remains of a failed copy
        }
      }
    }
  }

  private static String message(IOException e) {
    return e instanceof AccessDeniedException ? "permission denied" : String.valueOf(e.getMessage());
  }

  // ------------------------------------------------------------------------------ progress

  /** Progress on stderr only for a person watching it (or when asked): never in a script's way. */
  private boolean showProgress(CliContext ctx) {
    return progress || (ctx.err() == System.err && stderrIsTerminal());
  }

  private static boolean stderrIsTerminal() {
    try {
      String target = Files.readSymbolicLink(Path.of("/proc/self/fd/2")).toString();
      return target.startsWith("/dev/pts/") || target.startsWith("/dev/tty");
    } catch (IOException | UnsupportedOperationException e) {
      return false;
    }
  }
}
