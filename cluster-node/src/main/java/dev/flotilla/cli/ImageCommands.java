package dev.flotilla.cli;

import dev.flotilla.api.v1.BasicCredentials;
import dev.flotilla.api.v1.DeleteImageRequest;
import dev.flotilla.api.v1.Image;
import dev.flotilla.api.v1.ImportImageMetadata;
import dev.flotilla.api.v1.ImportImageRequest;
import dev.flotilla.api.v1.ListImagesRequest;
import dev.flotilla.api.v1.PullImageRequest;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code flotilla image ls|pull|rm|import}: the images of the node the CLI talks to (images are
 * per node). Yours are those you imported or pulled with your own credentials; the rest are shared.
 */
@Command(name = "image", mixinStandardHelpOptions = true,
    description = "Manage the images of the node you talk to: ls, pull, rm, import.",
    subcommands = {ImageCommands.Ls.class, ImageCommands.Pull.class, ImageCommands.Rm.class, ImageCommands.Import.class})
final class ImageCommands extends CommandGroup {
  /** A pull without --timeout waits this long (downloads take time); --timeout overrides. */
  static final Duration PULL_TIMEOUT = Duration.ofMinutes(10);
  /** An import without --timeout may take this long (sending and storing gigabytes); --timeout overrides. */
  static final Duration IMPORT_TIMEOUT = Duration.ofHours(1);
  static final int MAX_SECRET = 8192;

  @Command(name = "ls", mixinStandardHelpOptions = true,
      description = "List your images and the shared ones on the node: NAME, DIGEST, SIZE, OWNER, CREATED, LAST USED.")
  static final class Ls extends TimedCommand {
    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
        converter = OutputFormat.Converter.class,
        description = "table (default) or json (an array of {names, digest, size, owner, created, lastUsed}).")
    OutputFormat output;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      var images = client.call(ImageServiceMethods.LIST_IMAGES, ListImagesRequest.getDefaultInstance(), null).getImagesList();
      ctx.out().print(output == OutputFormat.JSON ? ImageText.array(images) : ImageText.table(images, Instant.now()));
      return ExitCodes.OK;
    }
  }

  @Command(name = "pull", mixinStandardHelpOptions = true,
      description = {"Pull an image to the node (or find it there); prints NAME DIGEST.",
          "With your own credentials the image is yours; without, the node's configured credentials (if any) "
              + "are used and the image is shared. Waits up to 10m unless --timeout says otherwise."})
  static final class Pull extends TimedCommand {
    @Parameters(index = "0", paramLabel = "REF", description = "[host[:port]/]repo[:tag|@sha256:digest], e.g. busybox.")
    String ref;

    @Option(names = "--username", paramLabel = "USER", description = "Registry user; the password comes from stdin (--password-stdin).")
    String username;

    @Option(names = "--password-stdin", description = "Read the registry password from stdin (one line).")
    boolean passwordStdin;

    // --registry-token-file, not --token-file: that one names the node's own bearer token, on every command.
    @Option(names = "--registry-token-file", paramLabel = "FILE", description = "A file holding a registry bearer token.")
    Path tokenFile;

    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
        converter = OutputFormat.Converter.class, description = "text (default: NAME DIGEST) or json (the image).")
    OutputFormat output;

    @Override
    void validate() {
      if (username != null && tokenFile != null) {
        throw new TypeConversionException("give either --username with --password-stdin, or --registry-token-file, not both");
      }
      if ((username != null) != passwordStdin) {
        throw new TypeConversionException("--username and --password-stdin go together");
      }
    }

    @Override
    Duration defaultTimeout() {
      return PULL_TIMEOUT;
    }

    PullImageRequest request(CliContext ctx) {
      PullImageRequest.Builder req = PullImageRequest.newBuilder().setRef(ref);
      if (username != null) {
        req.setBasic(BasicCredentials.newBuilder().setUsername(username).setPassword(readPassword(ctx)));
      } else if (tokenFile != null) {
        req.setBearerToken(readToken(tokenFile));
      }
      return req.build();
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      Image img = client.call(ImageServiceMethods.PULL_IMAGE, request(ctx), null);
      ctx.out().print(output == OutputFormat.JSON ? ImageText.object(img) : ImageText.line(img));
      return ExitCodes.OK;
    }

    private static String readPassword(CliContext ctx) {
      try {
        byte[] in = ctx.in().readNBytes(MAX_SECRET + 2);
        String pw = new String(in, StandardCharsets.UTF_8);
        if (pw.endsWith("\n")) pw = pw.substring(0, pw.length() - 1);
        if (pw.endsWith("\r")) pw = pw.substring(0, pw.length() - 1);
        if (pw.length() > MAX_SECRET || pw.contains("\n")) {
          throw new CliFailure(ExitCodes.USAGE, "--password-stdin: give the password as one line of at most " + MAX_SECRET + " characters");
        }
        return pw;
      } catch (IOException e) {
        throw new CliFailure(ExitCodes.USAGE, "--password-stdin: cannot read stdin: " + e.getMessage());
      }
    }

    private static String readToken(Path file) {
      try {
        if (Files.size(file) > MAX_SECRET + 2) {
          throw new CliFailure(ExitCodes.USAGE, "--registry-token-file " + file + " is larger than a token can be (" + MAX_SECRET + " characters)");
        }
        String t = Files.readString(file, StandardCharsets.UTF_8).strip();
        if (t.isEmpty()) throw new CliFailure(ExitCodes.USAGE, "--registry-token-file " + file + " is empty");
        return t;
      } catch (IOException e) {
        throw new CliFailure(ExitCodes.USAGE, "--registry-token-file: cannot read " + file + ": " + e.getMessage());
      }
    }
  }

  @Command(name = "rm", mixinStandardHelpOptions = true,
      description = {"Remove one of your image names (or, for a digest, all your names of it); prints REF.",
          "The bytes go once no tenant and no sandbox on the node uses them. Shared images: admin tenants only."})
  static final class Rm extends TimedCommand {
    @Parameters(index = "0", paramLabel = "REF", description = "A name as `image ls` shows it, or a digest sha256:….")
    String ref;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      client.call(ImageServiceMethods.DELETE_IMAGE, DeleteImageRequest.newBuilder().setRef(ref).build(), null);
      ctx.out().println(ref);
      return ExitCodes.OK;
    }
  }

  @Command(name = "import", mixinStandardHelpOptions = true,
      description = {"Import an OCI image layout tar or a `docker save` archive into the node; prints NAME DIGEST.",
          "The image is yours and lives on that node only. Progress goes to stderr for large files. "
              + "Waits up to 1h unless --timeout says otherwise."})
  static final class Import extends TimedCommand {
    @Parameters(index = "0", paramLabel = "FILE", description = "The archive (a tar; not compressed).")
    Path file;

    @Option(names = "--name", paramLabel = "REPO:TAG",
        description = "Name it this (default: the archive's own name; needed when it holds several images).")
    String name;

    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
        converter = OutputFormat.Converter.class, description = "text (default: NAME DIGEST) or json (the image).")
    OutputFormat output;

    @Override
    void validate() {
      if (!Files.isRegularFile(file)) throw new TypeConversionException(file + " is not a readable file");
      if (name != null && name.isBlank()) throw new TypeConversionException("--name must not be empty");
    }

    @Override
    Duration defaultTimeout() {
      return IMPORT_TIMEOUT;
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      long total;
      try {
        total = Files.size(file);
      } catch (IOException e) {
        throw new CliFailure(ExitCodes.USAGE, "cannot read " + file + ": " + e.getMessage());
      }
      try (InputStream in = Files.newInputStream(file)) {
        Image img = client.clientStream(ImageServiceMethods.IMPORT_IMAGE, new Upload<>(ImportImageRequest.newBuilder()
            .setMetadata(ImportImageMetadata.newBuilder().setName(name == null ? "" : name)).build(), in,
            b -> ImportImageRequest.newBuilder().setChunk(b).build(),
            new Upload.Progress(ctx, "importing", file.getFileName().toString(), total, true)), null);
        ctx.out().print(output == OutputFormat.JSON ? ImageText.object(img) : ImageText.line(img));
        return ExitCodes.OK;
      } catch (IOException e) {
        throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot read " + file + ": " + e.getMessage());
      } catch (UncheckedIOException e) {
        throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot read " + file + ": " + e.getCause().getMessage());
      }
    }
  }
}
