package dev.flotilla.node.grpc;

import dev.flotilla.api.v1.ListTemplatesRequest;
import dev.flotilla.api.v1.ListTemplatesResponse;
import dev.flotilla.api.v1.RemoveTemplateRequest;
import dev.flotilla.api.v1.Template;
import dev.flotilla.api.v1.TemplateServicePowerApi;
import dev.flotilla.api.v1.WarmTemplateRequest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.node.templates.NodeTemplates;
import dev.flotilla.sandbox.SpecValidator;
import dev.flotilla.vm.TemplateCatalog;
import dev.flotilla.vm.VmException;
import io.grpc.Status;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import org.apache.pekko.grpc.javadsl.Metadata;

/**
 * {@code flotilla.v1.TemplateService}: this node's VM templates for the caller's tenant. The
 * catalogs block (a warm boots a VM: tens of seconds under TCG), so every call runs on the node's
 * blocking executor, never on the gRPC server's or an actor's threads. Templates are node-local:
 * this node's catalogs are the whole answer.
 */
public final class TemplateServiceImpl implements TemplateServicePowerApi {
  static final int MAX_IMAGE = ImageServiceImpl.MAX_REF;
  static final int MAX_ID = 256;

  private final NodeTemplates templates;
  private final TokenAuth auth;
  /** Warms running now: each holds a blocking thread and boots a VM until it ends, timed out or not. */
  private final Semaphore warms;

  public TemplateServiceImpl(NodeTemplates templates, TokenAuth auth) {
    this.templates = templates;
    this.auth = auth;
    this.warms = new Semaphore(templates.maxConcurrentWarms());
  }

  @Override
  public CompletionStage<Template> warmTemplate(WarmTemplateRequest in, Metadata md) {
    return unary(md, tenant -> {
      String driver = in.getDriver().isEmpty() ? NodeTemplates.DEFAULT_DRIVER : in.getDriver();
      TemplateCatalog catalog = catalog(driver);
      String image = image(in.getImage());
      SpecValidator.Resources size = templates.sizes().resources(unsigned(in.getCpus()), unsigned(in.getMemoryMib()));
      // Pinned as a create pins (pulled if the node lacks it, NOT_FOUND if the tenant cannot see it):
      // the driver keys the template by what a sandbox's spec will name.
      CompletionStage<String> pinned = image.isEmpty() ? CompletableFuture.completedFuture(image)
          : templates.images().pin(tenant, image);
      // One deadline for the pull and the boot together, so that the CLI's (past it) always hears the node's answer.
      return pinned.thenCompose(ref -> warm(tenant, driver, catalog, ref, size)).toCompletableFuture()
          .orTimeout(templates.warmTimeout().toMillis(), TimeUnit.MILLISECONDS)
          .exceptionallyCompose(e -> CompletableFuture.failedFuture(unwrap(e) instanceof TimeoutException
              ? GrpcErrors.status(Status.UNAVAILABLE, "the template did not finish warming within "
                  + templates.warmTimeout().toSeconds() + " s (flotilla.templates.warm-timeout); it goes on on node "
                  + templates.node() + ": retry later, and the finished template is answered")
              : e));
    });
  }

  private CompletionStage<Template> warm(String tenant, String driver, TemplateCatalog catalog, String image,
      SpecValidator.Resources size) {
    if (!warms.tryAcquire()) {
      // UNAVAILABLE, not RESOURCE_EXHAUSTED: no quota of the caller's is spent, and the same call succeeds later.
      throw GrpcErrors.status(Status.UNAVAILABLE, "this node already warms " + templates.maxConcurrentWarms()
          + " template(s) at once (flotilla.templates.max-concurrent-warms): retry when one has finished");
    }
    CompletableFuture<Template> warm;
    try {
      warm = CompletableFuture.supplyAsync(() -> toProto(driver, blocking(() ->
          catalog.warm(new TemplateCatalog.WarmRequest(tenant, image, size.vcpus(), size.memoryMiB())))), templates.blocking());
    } catch (RuntimeException e) {
      warms.release();
      throw e;
    }
    // The permit goes when the boot ends, not when the caller stops waiting: the VM boots on.
    warm.whenComplete((t, e) -> warms.release());
    return warm.copy();
  }

  @Override
  public CompletionStage<ListTemplatesResponse> listTemplates(ListTemplatesRequest in, Metadata md) {
    return unary(md, tenant -> CompletableFuture.supplyAsync(() -> {
      List<Template> out = new ArrayList<>();
      templates.catalogs().forEach((driver, catalog) -> catalog.list(tenant).stream()
          .filter(t -> t.tenant().equals(tenant)) // a catalog's slip must not show one tenant another's
          .forEach(t -> out.add(toProto(driver, t))));
      out.sort(Comparator.comparing((Template t) -> t.getLastUsed().getSeconds())
          .thenComparing(t -> t.getLastUsed().getNanos()).reversed());
      return ListTemplatesResponse.newBuilder().addAllTemplates(out).build();
    }, templates.blocking()));
  }

  @Override
  public CompletionStage<Template> removeTemplate(RemoveTemplateRequest in, Metadata md) {
    return unary(md, tenant -> {
      String id = in.getId();
      if (id.isEmpty() || id.length() > MAX_ID || hasControl(id)) {
        throw new IllegalArgumentException("id must be 1-" + MAX_ID + " characters: a template id as ListTemplates shows it");
      }
      return CompletableFuture.supplyAsync(() -> {
        for (Map.Entry<String, TemplateCatalog> e : templates.catalogs().entrySet()) {
          try {
            return toProto(e.getKey(), blocking(() -> e.getValue().remove(tenant, id)));
          } catch (CompletionException ex) {
            if (!(ex.getCause() instanceof TemplateCatalog.NotFound)) throw ex;
          }
        }
        throw new CompletionException(new TemplateCatalog.NotFound("template " + id + " not found on node " + templates.node()
            + (templates.catalogs().isEmpty() ? ": no driver here has templates"
                : ": `template ls` (ListTemplates) shows yours on this node; templates are node-local, so it may be on another")));
      }, templates.blocking());
    });
  }

  // ------------------------------------------------------------------------------ translation

  static Template toProto(String driver, String node, TemplateCatalog.Template t) {
    Template.Builder b = Template.newBuilder()
        .setId(t.id())
        .setImage(t.image())
        .setImageDigest(t.imageDigest())
        .setCpus(t.vcpus())
        .setMemoryMib(t.memoryMiB())
        .setDiskMib(t.diskMiB())
        .setBytes(t.bytes())
        .setClones(t.clones())
        .setNode(node)
        .setDriver(driver);
    if (t.created() != null) b.setCreated(Translations.timestamp(t.created()));
    if (t.lastUsed() != null) b.setLastUsed(Translations.timestamp(t.lastUsed()));
    else if (t.created() != null) b.setLastUsed(b.getCreated());
    return b.build();
  }

  private Template toProto(String driver, TemplateCatalog.Template t) {
    return toProto(driver, templates.node(), t);
  }

  // ------------------------------------------------------------------------------ plumbing

  /** The catalog of {@code driver}, or FAILED_PRECONDITION naming the drivers here that have one. */
  private TemplateCatalog catalog(String driver) {
    TemplateCatalog c = templates.catalogs().get(driver);
    if (c != null) return c;
    String which = templates.catalogs().isEmpty() ? "no driver on this node has templates"
        : "on this node templates are for: " + String.join(", ", templates.withTemplates());
    if (driver.length() > 64 || hasControl(driver)) driver = "(invalid name)";
    throw GrpcErrors.status(Status.FAILED_PRECONDITION, (templates.drivers().contains(driver)
        ? "driver '" + driver + "' has no templates" : "this node has no driver '" + driver + "'") + ": " + which
        + " (this node offers " + (templates.drivers().isEmpty() ? "no drivers" : String.join(", ", new java.util.TreeSet<>(templates.drivers())))
        + ")");
  }

  /** The image as a sandbox spec names it, checked here so that a bad one fails before any VM boots. */
  private static String image(String ref) {
    if (ref.isEmpty()) return ref;
    if (ref.length() > MAX_IMAGE || hasControl(ref)) {
      throw new IllegalArgumentException("image must be at most " + MAX_IMAGE
          + " characters: [host[:port]/]repository[:tag][@sha256:digest], e.g. busybox, or empty for the default image");
    }
    try {
      ImageReference.parse(ref);
    } catch (ImageException e) {
      throw new IllegalArgumentException("image '" + ref + "': " + e.getMessage(), e);
    }
    return ref;
  }

  /** A uint32 as the int the size checks take; past int's range it is out of bounds anyway. */
  private static int unsigned(int v) {
    return v < 0 ? Integer.MAX_VALUE : v;
  }

  private static boolean hasControl(String s) {
    return s.chars().anyMatch(c -> c < 0x20 || c == 0x7f);
  }

  private interface CatalogCall<T> {
    T call() throws VmException;
  }

  /** A catalog call on the blocking executor: its checked failure travels as the future's cause. */
  private static <T> T blocking(CatalogCall<T> call) {
    try {
      return call.call();
    } catch (VmException e) {
      throw new CompletionException(e);
    }
  }

  private static Throwable unwrap(Throwable e) {
    return e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
  }

  private <T> CompletionStage<T> unary(Metadata md, Function<String, CompletionStage<T>> call) {
    try {
      return call.apply(Callers.tenant(auth, md))
          .exceptionallyCompose(e -> CompletableFuture.failedFuture(GrpcErrors.convertTemplate(e)));
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(GrpcErrors.convertTemplate(e));
    }
  }
}
