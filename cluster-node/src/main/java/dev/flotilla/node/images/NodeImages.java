package dev.flotilla.node.images;

import com.typesafe.config.Config;
import dev.flotilla.images.Credentials;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.images.ImageStore;
import dev.flotilla.images.ImagesConfig;
import dev.flotilla.images.ResolvedImage;
import dev.flotilla.images.registry.RegistryConfig;
import dev.flotilla.sandbox.ImagePinning;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.vm.ImageRootfs;
import dev.flotilla.vm.VmException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The node's images: its {@link ImageStore} (pulls, imports, unpacked layers), what pins a create's
 * image to a digest ({@link ImagePinning}) and what gives a driver an image's layers
 * ({@link ImageRootfs}). Images that sandboxes on this node run are never evicted.
 *
 * <p>Across nodes: a sandbox records the reference it was created with, pinned to the manifest
 * digest. A node that does not have those bytes pulls them again by digest (a registry image runs
 * the same bytes anywhere, even after its tag moved). An image imported from a file is, in a
 * cluster on PostgreSQL, also in the shared store ({@link ImageStore#share}): a node that does not
 * have it fetches it from there (verified) when it resolves it. On the embedded H2 journal it lives
 * only in this node's store.
 */
public final class NodeImages implements ImagePinning, ImageRootfs {
  private static final Logger log = LoggerFactory.getLogger(NodeImages.class);

  private final ImageStore store;
  private final Map<String, Digest> running = new ConcurrentHashMap<>(); // sandbox with state here -> its image
  private final long pullTimeoutMs;
  private final Executor blocking;
  private final Path importDir;
  private final long maxImportBytes;
  private volatile Set<String> allowedRegistries = Set.of(); // empty: any

  private NodeImages(ImageStore store, long pullTimeoutMs, Executor blocking, Path importDir, long maxImportBytes) {
    this.store = store;
    this.pullTimeoutMs = pullTimeoutMs;
    this.blocking = blocking;
    this.importDir = importDir;
    this.maxImportBytes = maxImportBytes;
  }

  /** From {@code flotilla.images} (node.conf); the store under {@code <data-dir>/images} unless {@code dir} says otherwise. */
  public static NodeImages fromConfig(Config c, Path dataDir, Executor blocking) {
    Path root = c.getString("dir").isEmpty() ? dataDir.resolve("images") : Path.of(c.getString("dir"));
    Map<String, Credentials> auth = new LinkedHashMap<>();
    for (Config cred : c.getConfigList("credentials")) {
      String host = cred.getString("registry");
      if (cred.hasPath("token-file")) {
        auth.put(host, Credentials.bearerTokenFile(Path.of(cred.getString("token-file"))));
      } else {
        auth.put(host, Credentials.basic(cred.getString("username"), cred.getString("password")));
      }
    }
    RegistryConfig registry = RegistryConfig.defaults()
        .withInsecureRegistries(Set.copyOf(c.getStringList("insecure-registries")))
        .withAuth(auth);
    ImagesConfig cfg = ImagesConfig.defaults(root).withRegistry(registry)
        .withCacheMax(c.getBytes("cache-max"), ImagesConfig.DEFAULT_EVICTION_GRACE);
    NodeImages[] self = new NodeImages[1];
    ImageStore store = new ImageStore(cfg, () -> self[0] == null ? Set.of() : Set.copyOf(self[0].running.values()), blocking);
    self[0] = new NodeImages(store, c.getDuration("pull-timeout").toMillis(), blocking, importDir(root),
        c.getBytes("max-import-bytes"));
    self[0].allowedRegistries = Set.copyOf(c.getStringList("allowed-registries"));
    return self[0];
  }

  /**
   * {@code <root>/imports}: archives being received by ImportImage, node-only (0700, files 0600).
   * What a crash left there is removed now: nobody is importing yet.
   */
  private static Path importDir(Path root) {
    Path dir = root.resolve("imports");
    try {
      Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
      Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
      try (var leftovers = Files.newDirectoryStream(dir)) {
        for (Path p : leftovers) {
          if (Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) || Files.isSymbolicLink(p)) Files.deleteIfExists(p);
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot prepare the image import directory " + dir + ": " + e.getMessage(), e);
    }
    return dir;
  }

  public ImageStore store() {
    return store;
  }

  /** Where store calls run: never an actor's or the gRPC server's thread. */
  public Executor blocking() {
    return blocking;
  }

  /** A new node-only file for one import's archive; the caller deletes it whatever happens. */
  public Path newImportFile() {
    try {
      return Files.createTempFile(importDir, "import-", ".tar");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create a file in " + importDir + ": " + e.getMessage(), e);
    }
  }

  public static void deleteQuietly(Path file) {
    try {
      Files.deleteIfExists(file);
    } catch (IOException e) {
      log.warn("cannot delete {}: {}", file, e.toString());
    }
  }

  /** {@code flotilla.images.max-import-bytes}: the most one ImportImage may send. */
  public long maxImportBytes() {
    return maxImportBytes;
  }

  /** {@code flotilla.images.pull-timeout}. */
  /**
   * Refuses a pull from a registry the operator did not allow ({@code flotilla.images.allowed-registries};
   * empty allows any). A pull is a request the node sends on a tenant's behalf to the host the
   * tenant names: production nodes list their registries, so that a tenant cannot point the node at
   * its own loopback services or internal network.
   */
  public void checkRegistry(ImageReference ref) {
    Set<String> allowed = allowedRegistries;
    if (allowed.isEmpty() || allowed.contains(ref.domain()) || allowed.contains(ref.registry())) return;
    throw new ImageException("registry " + ref.domain() + " is not allowed on this node (flotilla.images.allowed-registries: "
        + String.join(", ", new java.util.TreeSet<>(allowed)) + ")");
  }

  public long pullTimeoutMs() {
    return pullTimeoutMs;
  }

  /** Pulls (or finds) {@code image} for {@code tenant}: shared registry pulls unless the tenant has it as its own. */
  @Override
  public CompletionStage<String> pin(String tenant, String image) {
    ImageReference ref;
    try {
      ref = ImageReference.parse(image);
    } catch (ImageException e) {
      return CompletableFuture.failedFuture(SandboxError.invalid("image '" + image + "': " + e.getMessage()));
    }
    // resolve reads the catalog and a config blob: on the blocking executor, never the caller's
    // (a gRPC or actor) thread.
    CompletionStage<ResolvedImage> found = CompletableFuture.supplyAsync(() -> store.resolve(image, tenant), blocking)
        .thenCompose(local -> {
          if (local.isPresent()) return CompletableFuture.completedFuture(local.get());
          checkRegistry(ref);
          return store.pull(ref, Optional.empty(), "");
        });
    return found.handle((img, err) -> {
      if (err != null) throw asSandboxError(image, unwrap(err));
      return pinned(ref, img);
    });
  }

  /** The image's Entrypoint then Cmd: it was pinned (hence is in the store) just before. */
  @Override
  public CompletionStage<List<String>> command(String tenant, String pinned) {
    return CompletableFuture.supplyAsync(() -> {
      ImageReference ref = ImageReference.parse(pinned);
      ResolvedImage img = store.resolve(ref.digestOpt().map(Digest::toString).orElse(pinned), tenant)
          .orElseThrow(() -> new SandboxError(SandboxError.Kind.NOT_FOUND, "image '" + pinned + "' is no longer on this node; retry"));
      List<String> argv = new java.util.ArrayList<>(img.config().entrypoint());
      argv.addAll(img.config().cmd());
      return argv;
    }, blocking);
  }

  static String pinned(ImageReference ref, ResolvedImage img) {
    return ref.withoutDigest().withDigest(img.manifestDigest()).toString();
  }

  @Override
  public Rootfs resolve(String pinnedImage, String owner, String sandboxId) throws VmException {
    ResolvedImage img;
    try {
      ImageReference ref = ImageReference.parse(pinnedImage);
      Optional<ResolvedImage> local = store.resolve(ref.digestOpt().map(Digest::toString).orElse(pinnedImage), owner);
      img = local.isPresent() ? local.get() : store.pull(ref, Optional.empty(), "").get(pullTimeoutMs, TimeUnit.MILLISECONDS);
      running.put(sandboxId, img.manifestDigest());
      List<Path> layers = store.layerDirs(img.manifestDigest());
      Map<String, String> env = new HashMap<>();
      for (String kv : img.config().env()) {
        int eq = kv.indexOf('=');
        if (eq > 0) env.put(kv.substring(0, eq), kv.substring(eq + 1));
      }
      return new Rootfs(layers, env, img.config().workingDir(), img.config().user());
    } catch (ImageException e) {
      throw new VmException("image " + pinnedImage + " cannot be had on this node: " + e.getMessage(), e);
    } catch (ExecutionException e) {
      throw new VmException("image " + pinnedImage + " cannot be pulled on this node: " + unwrap(e).getMessage(), e);
    } catch (TimeoutException e) {
      throw new VmException("image " + pinnedImage + ": pull did not finish within " + pullTimeoutMs + " ms", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new VmException("interrupted while getting image " + pinnedImage, e);
    }
  }

  @Override
  public void released(String sandboxId) {
    running.remove(sandboxId);
  }

  private static Throwable unwrap(Throwable t) {
    while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) t = t.getCause();
    return t;
  }

  static SandboxError asSandboxError(String image, Throwable t) {
    if (t instanceof SandboxError se) return se;
    if (t instanceof ImageException.NotFound) return new SandboxError(SandboxError.Kind.NOT_FOUND, "image '" + image + "' not found: " + t.getMessage());
    if (t instanceof ImageException.Unavailable) {
      return new SandboxError(SandboxError.Kind.UNAVAILABLE, "image '" + image + "' could not be pulled: " + t.getMessage() + "; retry");
    }
    if (t instanceof ImageException) return SandboxError.invalid("image '" + image + "': " + t.getMessage());
    return new SandboxError(SandboxError.Kind.UNAVAILABLE, "image '" + image + "' could not be pulled: " + t.getMessage() + "; retry");
  }
}
