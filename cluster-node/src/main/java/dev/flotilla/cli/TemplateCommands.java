package dev.flotilla.cli;

import dev.flotilla.api.v1.ListTemplatesRequest;
import dev.flotilla.api.v1.RemoveTemplateRequest;
import dev.flotilla.api.v1.Template;
import dev.flotilla.api.v1.WarmTemplateRequest;
import java.time.Duration;
import java.time.Instant;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code flotilla template warm|ls|rm}: the qemu driver's VM templates on the node the CLI talks
 * to. Templates are node-local and yours: each node keeps its own, and no other tenant's sandbox
 * starts from them.
 */
@Command(name = "template", mixinStandardHelpOptions = true,
    description = {"Manage your VM templates on the node you talk to: warm, ls, rm.",
        "A template is a qemu VM booted once and saved; sandboxes of the same image, vCPUs and memory on that node "
            + "start from it in a fraction of a cold boot. Templates are node-local: warm one on each node you use."},
    subcommands = {TemplateCommands.Warm.class, TemplateCommands.Ls.class, TemplateCommands.Rm.class})
final class TemplateCommands extends CommandGroup {
  /**
   * A warm without --timeout waits this long: a minute past the node's own limit
   * (flotilla.templates.warm-timeout, 10m by default), so the node's answer, even its timeout, arrives first.
   */
  static final Duration WARM_TIMEOUT = Duration.ofMinutes(11);

  @Command(name = "warm", mixinStandardHelpOptions = true,
      description = {"Build your template for an image and size on the node (boot, warm, save), or find it there; "
          + "prints ID IMAGE (N vCPU, M MiB): SIZE on NODE when it is ready.",
          "Takes tens of seconds without KVM; waits up to 11m unless --timeout says otherwise."})
  static final class Warm extends TimedCommand {
    @Option(names = "--image", paramLabel = "REF",
        description = "The image, as `create --image` takes it (default: the default image).")
    String image;

    @Option(names = "--cpus", paramLabel = "N", converter = ArgParsers.CpusConverter.class,
        description = "vCPUs, as the sandboxes that will start from it ask (default: the node's).")
    Integer cpus;

    @Option(names = "--memory", paramLabel = "MiB", converter = ArgParsers.MemoryConverter.class,
        description = "Memory in MiB, as the sandboxes that will start from it ask (default: the node's).")
    Integer memoryMib;

    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
        converter = OutputFormat.Converter.class, description = "text (default) or json (the template).")
    OutputFormat output;

    @Override
    void validate() {
      if (image != null && image.isBlank()) {
        throw new TypeConversionException("--image must not be empty (leave it out for the default image)");
      }
    }

    @Override
    Duration defaultTimeout() {
      return WARM_TIMEOUT;
    }

    WarmTemplateRequest request() {
      WarmTemplateRequest.Builder req = WarmTemplateRequest.newBuilder();
      if (image != null) req.setImage(image);
      if (cpus != null) req.setCpus(cpus);
      if (memoryMib != null) req.setMemoryMib(memoryMib);
      return req.build();
    }

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      Template t = client.call(TemplateServiceMethods.WARM_TEMPLATE, request(), null);
      ctx.out().print(output == OutputFormat.JSON ? TemplateText.object(t) : TemplateText.line(t));
      return ExitCodes.OK;
    }
  }

  @Command(name = "ls", mixinStandardHelpOptions = true,
      description = "List your templates on the node, most recently used first: "
          + "ID, IMAGE, CPUS, MEMORY, DISK, SIZE, CLONES, LAST USED, NODE.")
  static final class Ls extends TimedCommand {
    @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
        converter = OutputFormat.Converter.class,
        description = "table (default) or json (an array of {id, image, imageDigest, cpus, memoryMib, diskMib, bytes, "
            + "created, lastUsed, clones, node, driver}).")
    OutputFormat output;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      var templates = client.call(TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance(), null)
          .getTemplatesList();
      ctx.out().print(output == OutputFormat.JSON ? TemplateText.array(templates) : TemplateText.table(templates, Instant.now()));
      return ExitCodes.OK;
    }
  }

  @Command(name = "rm", mixinStandardHelpOptions = true,
      description = {"Remove one of your templates from the node; prints its ID.",
          "A template that running sandboxes started from is refused until they end."})
  static final class Rm extends TimedCommand {
    @Parameters(index = "0", paramLabel = "ID", description = "A template id as `template ls` shows it.")
    String id;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      Template t = client.call(TemplateServiceMethods.REMOVE_TEMPLATE, RemoveTemplateRequest.newBuilder().setId(id).build(), null);
      ctx.out().println(t.getId().isEmpty() ? id : Names.oneLine(t.getId()));
      return ExitCodes.OK;
    }
  }
}
