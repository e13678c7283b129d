package dev.flotilla.node.grpc;

import dev.flotilla.api.v1.DeleteImageRequest;
import dev.flotilla.api.v1.Image;
import dev.flotilla.api.v1.ImageServicePowerApi;
import dev.flotilla.api.v1.ImportImageRequest;
import dev.flotilla.api.v1.ListImagesRequest;
import dev.flotilla.api.v1.ListImagesResponse;
import dev.flotilla.api.v1.PullImageRequest;
import dev.flotilla.images.Credentials;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.images.ImageStore;
import dev.flotilla.images.ImageSummary;
import dev.flotilla.images.ResolvedImage;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.node.images.NodeImages;
import io.grpc.Status;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.grpc.javadsl.Metadata;
import org.apache.pekko.stream.javadsl.FileIO;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/**
 * {@code flotilla.v1.ImageService}: this node's images for the caller's tenant. Every store call
 * runs on the node's blocking executor (they read the catalog and blobs, pulls download), never
 * on the gRPC server's threads. An import is spooled to a node-only file under the store and
 * deleted once imported or refused.
 */
public final class ImageServiceImpl implements ImageServicePowerApi {
  static final int MAX_REF = 512;
  static final int MAX_USERNAME = 256;
  static final int MAX_PASSWORD = 4096;
  static final int MAX_TOKEN = 8192;

  private final NodeImages images;
  private final TokenAuth auth;
  private final Set<String> adminTenants;
  private final ActorSystem<?> system;

  public ImageServiceImpl(NodeImages images, TokenAuth auth, Set<String> adminTenants, ActorSystem<?> system) {
    this.images = images;
    this.auth = auth;
    this.adminTenants = adminTenants;
    this.system = system;
  }

  @Override
  public CompletionStage<Image> pullImage(PullImageRequest in, Metadata md) {
    return unary(md, tenant -> {
      ImageReference ref = reference(in.getRef(), "ref");
      Optional<Credentials> creds = switch (in.getCredentialsCase()) {
        case BASIC -> {
          String user = in.getBasic().getUsername();
          String password = in.getBasic().getPassword();
          if (user.isEmpty() || user.length() > MAX_USERNAME || user.contains(":") || hasControl(user)) {
            throw new IllegalArgumentException("basic.username must be 1-" + MAX_USERNAME
                + " characters without ':' or control characters");
          }
          if (password.length() > MAX_PASSWORD || hasControl(password)) {
            throw new IllegalArgumentException("basic.password must be at most " + MAX_PASSWORD
                + " characters without control characters");
          }
          yield Optional.of(Credentials.basic(user, password));
        }
        case BEARER_TOKEN -> {
          String token = in.getBearerToken();
          if (token.isEmpty() || token.length() > MAX_TOKEN || token.chars().anyMatch(c -> c < 0x21 || c > 0x7e)) {
            throw new IllegalArgumentException("bearer_token must be 1-" + MAX_TOKEN + " printable ASCII characters");
          }
          yield Optional.of(Credentials.bearerToken(token));
        }
        default -> Optional.<Credentials>empty();
      };
      images.checkRegistry(ref);
      String owner = creds.isPresent() ? tenant : ImageStore.SHARED;
      // A copy: the store shares one future between concurrent pulls; our deadline is ours alone.
      return images.store().pull(ref, creds, owner).copy()
          .orTimeout(images.pullTimeoutMs(), TimeUnit.MILLISECONDS)
          .thenApplyAsync(img -> describe(tenant, img), images.blocking());
    });
  }

  @Override
  public CompletionStage<Image> importImage(Source<ImportImageRequest, NotUsed> in, Metadata md) {
    return unary(md, tenant -> in.prefixAndTail(1).runWith(Sink.head(), system).thenCompose(pair -> {
      if (pair.first().isEmpty() || !pair.first().get(0).hasMetadata()) {
        throw new IllegalArgumentException("the first ImportImage message must be the metadata (name may be empty)");
      }
      String name = pair.first().get(0).getMetadata().getName();
      Optional<String> named = Optional.empty();
      if (!name.isEmpty()) {
        ImageReference ref = reference(name, "metadata.name");
        if (ref.digest() != null) {
          throw new IllegalArgumentException("metadata.name must be REPOSITORY[:TAG] without a digest (the digest is the archive's)");
        }
        named = Optional.of(name);
      }
      long max = images.maxImportBytes();
      AtomicLong received = new AtomicLong();
      Source<ByteString, NotUsed> data = pair.second().map(r -> {
        if (r.hasMetadata()) throw new IllegalArgumentException("only the first ImportImage message may be the metadata");
        if (received.addAndGet(r.getChunk().size()) > max) {
          throw new IllegalArgumentException("the archive is larger than this node accepts (flotilla.images.max-import-bytes = "
              + max + " bytes)");
        }
        return ByteString.fromArrayUnsafe(r.getChunk().toByteArray());
      });
      Optional<String> importName = named;
      return CompletableFuture.supplyAsync(images::newImportFile, images.blocking())
          .thenCompose(spool -> data.runWith(FileIO.toPath(spool), system)
              .thenApplyAsync(written -> {
                ResolvedImage img = images.store().importArchive(spool, importName, tenant);
                return describe(tenant, img);
              }, images.blocking())
              .whenCompleteAsync((img, err) -> NodeImages.deleteQuietly(spool), images.blocking()));
    }));
  }

  @Override
  public CompletionStage<ListImagesResponse> listImages(ListImagesRequest in, Metadata md) {
    return unary(md, tenant -> CompletableFuture.supplyAsync(
        () -> ListImagesResponse.newBuilder().addAllImages(group(tenant, images.store().list(tenant)).values()).build(),
        images.blocking()));
  }

  @Override
  public CompletionStage<Image> deleteImage(DeleteImageRequest in, Metadata md) {
    return unary(md, tenant -> {
      String ref = in.getRef();
      boolean digest = Digest.isDigest(ref);
      String name = digest ? null : reference(ref, "ref").toString();
      return CompletableFuture.supplyAsync(() -> {
        ImageStore store = images.store();
        Image before = group(tenant, store.list(tenant)).values().stream()
            .filter(i -> digest ? i.getDigest().equals(ref) : i.getNamesList().contains(name))
            .findFirst()
            .orElseThrow(() -> new ImageException.NotFound("image " + ref + " not found (ListImages shows yours and the shared ones)"));
        if (store.delete(ref, tenant)) return before;
        // Visible but not the caller's: a shared image, which only an admin tenant removes.
        if (!adminTenants.contains(tenant)) {
          throw GrpcErrors.status(Status.PERMISSION_DENIED, "image " + ref
              + " is shared by every tenant; only an admin tenant (flotilla.auth.admin-tenants) may remove it");
        }
        if (!store.delete(ref, ImageStore.SHARED)) {
          throw new ImageException.NotFound("image " + ref + " not found");
        }
        return before;
      }, images.blocking());
    });
  }

  // ------------------------------------------------------------------------------ translation

  /**
   * The image as the caller sees it now (all its names, the one it was just pulled or imported by
   * first), or as pulled/imported if no listing shows it.
   */
  private Image describe(String tenant, ResolvedImage img) {
    Image listed = group(tenant, images.store().list(tenant)).get(img.manifestDigest().toString());
    if (listed != null) {
      String by = img.reference().map(r -> r.withoutDigest().toString()).orElse(null);
      if (by == null || !listed.getNamesList().contains(by)) return listed;
      List<String> names = new java.util.ArrayList<>(listed.getNamesList());
      names.remove(by);
      names.add(0, by);
      return listed.toBuilder().clearNames().addAllNames(names).build();
    }
    Image.Builder b = Image.newBuilder().setDigest(img.manifestDigest().toString()).setSize(img.totalSize()).setOwner("shared");
    img.reference().ifPresent(r -> b.addNames(r.toString()));
    if (img.config().created() != null) b.setCreated(Translations.timestamp(img.config().created()));
    return b.build();
  }

  /** One Image per manifest digest, names together, in the store's order (by name). */
  static Map<String, Image> group(String tenant, List<ImageSummary> summaries) {
    Map<String, Image.Builder> byDigest = new LinkedHashMap<>();
    for (ImageSummary s : summaries) {
      Image.Builder b = byDigest.computeIfAbsent(s.manifestDigest().toString(), d -> Image.newBuilder()
          .setDigest(d)
          .setSize(s.size())
          .setOwner("shared"));
      if (!tenant.isEmpty() && s.owner().equals(tenant)) b.setOwner("yours");
      if (s.name() != null && !b.getNamesList().contains(s.name())) b.addNames(s.name());
      if (s.created() != null && !b.hasCreated()) b.setCreated(Translations.timestamp(s.created()));
      if (s.lastUsed() != null && s.lastUsed().toEpochMilli() > 0
          && (!b.hasLastUsed() || b.getLastUsed().getSeconds() < s.lastUsed().getEpochSecond())) {
        b.setLastUsed(Translations.timestamp(s.lastUsed()));
      }
    }
    Map<String, Image> out = new LinkedHashMap<>();
    byDigest.forEach((d, b) -> out.put(d, b.build()));
    return out;
  }

  // ------------------------------------------------------------------------------ plumbing

  private static ImageReference reference(String ref, String field) {
    if (ref.isEmpty() || ref.length() > MAX_REF || hasControl(ref)) {
      throw new IllegalArgumentException(field + " must be 1-" + MAX_REF
          + " characters: [host[:port]/]repository[:tag][@sha256:digest], e.g. busybox or registry.example.com/app:1");
    }
    try {
      return ImageReference.parse(ref);
    } catch (ImageException e) {
      throw new IllegalArgumentException(field + " '" + ref + "': " + e.getMessage(), e);
    }
  }

  private static boolean hasControl(String s) {
    return s.chars().anyMatch(c -> c < 0x20 || c == 0x7f);
  }

  private <T> CompletionStage<T> unary(Metadata md, Function<String, CompletionStage<T>> call) {
    try {
      return call.apply(Callers.tenant(auth, md))
          .exceptionallyCompose(e -> CompletableFuture.failedFuture(GrpcErrors.convertImage(e)));
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(GrpcErrors.convertImage(e));
    }
  }
}
