package dev.flotilla.images.registry;

import com.fasterxml.jackson.databind.JsonNode;
import dev.flotilla.images.Credentials;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.images.blob.BlobStore;
import dev.flotilla.images.oci.Descriptor;
import dev.flotilla.images.oci.ImageIndex;
import dev.flotilla.images.oci.Json;
import dev.flotilla.images.oci.Manifest;
import dev.flotilla.images.oci.MediaTypes;
import dev.flotilla.images.oci.Platform;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpResponse;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pulls images with the OCI distribution API: the manifest (an index or manifest list resolves
 * to its linux/amd64 manifest), then the config and layer blobs into a {@link BlobStore}, which
 * verifies every digest. Blobs already in the store are not downloaded again.
 *
 * <p>HTTPS always, except loopback hosts and {@code insecureRegistries}. Credentials come from
 * the pull or from the config per registry host; tokens from the Bearer dance live only as long
 * as one pull, so one caller's token never serves another caller.
 */
public final class RegistryClient {
  private static final Logger log = LoggerFactory.getLogger(RegistryClient.class);

  private final RegistryConfig config;
  private final HttpClient http;
  private final AtomicLong blobDownloads = new AtomicLong();

  public RegistryClient(RegistryConfig config) {
    this.config = config;
    // Redirects are followed by RegistrySession: it drops credentials when the host changes.
    this.http = HttpClient.newBuilder()
        .connectTimeout(config.connectTimeout())
        .followRedirects(HttpClient.Redirect.NEVER)
        .version(HttpClient.Version.HTTP_1_1)
        .build();
  }

  /**
   * What a pull stored: the platform manifest (its digest is the image's identity), and the index
   * it was chosen from when there was one.
   */
  public record Pulled(Digest manifestDigest, Manifest manifest, Digest indexDigest) {}

  /**
   * Pulls {@code ref} into {@code blobs}.
   *
   * @param credentials the caller's own, or null for the configured ones of the registry (if any)
   */
  public Pulled pull(ImageReference ref, Credentials credentials, BlobStore blobs) {
    Credentials creds = credentials != null ? credentials : config.auth().get(ref.registry());
    RegistrySession s = new RegistrySession(http, config, ref, creds);
    Fetched top = fetchManifest(s, ref, ref.manifestReference());
    if (ref.digest() != null && !ref.digest().equals(top.digest)) {
      throw new ImageException("registry " + ref.registry() + " returned content with digest " + top.digest
          + " for " + ref + "; refused");
    }
    Digest indexDigest = null;
    Fetched chosen = top;
    if (top.index) {
      indexDigest = top.digest;
      Descriptor d = ImageIndex.parse(top.bytes).select(Platform.LINUX_AMD64);
      chosen = fetchManifest(s, ref, d.digest().toString());
      if (chosen.index || !chosen.digest.equals(d.digest())) {
        throw new ImageException("registry " + ref.registry() + ": the linux/amd64 entry " + d.digest() + " of " + ref
            + " is not a single manifest with that digest; refused");
      }
    }
    Manifest m = Manifest.parse(chosen.bytes);
    for (Descriptor l : m.layers()) {
      if (MediaTypes.isZstd(l.mediaType())) {
        throw new ImageException(ref + ": layer " + l.digest() + " is " + l.mediaType() + "; zstd layers are not supported yet");
      }
    }
    if (m.config().size() > config.maxManifestBytes()) {
      throw new ImageException(ref + ": config blob of " + m.config().size() + " bytes is over the "
          + config.maxManifestBytes() + " byte limit");
    }
    blobs.put(chosen.bytes, chosen.digest);
    fetchBlob(s, ref, m.config(), blobs);
    for (Descriptor l : m.layers()) {
      fetchBlob(s, ref, l, blobs);
    }
    return new Pulled(chosen.digest, m, indexDigest);
  }

  /** Blob GETs that downloaded content (a blob already in the store costs none). */
  public long blobDownloads() {
    return blobDownloads.get();
  }

  private record Fetched(Digest digest, byte[] bytes, boolean index) {}

  private Fetched fetchManifest(RegistrySession s, ImageReference ref, String reference) {
    URI uri = s.apiUri("/v2/" + ref.repository() + "/manifests/" + reference);
    HttpResponse<InputStream> r = s.get(uri, MediaTypes.MANIFEST_ACCEPT);
    try (InputStream body = r.body()) {
      if (r.statusCode() == 404) {
        throw new ImageException.NotFound("image " + ref.domain() + "/" + ref.repository() + ":" + reference.replaceFirst("^(sha256:)", "@$1")
            + " not found in registry " + ref.registry() + errorDetail(body));
      }
      s.checkOk(r, body, "manifest of " + ref);
      byte[] bytes = RegistrySession.readBounded(body, config.maxManifestBytes(), "manifest of " + ref);
      String type = r.headers().firstValue("Content-Type").map(t -> t.split(";")[0].strip().toLowerCase(Locale.ROOT)).orElse("");
      return new Fetched(Digest.of(bytes), bytes, isIndex(type, bytes, ref));
    } catch (IOException e) {
      throw new ImageException.Unavailable("reading the manifest of " + ref + " from " + ref.registry() + " failed: " + e.getMessage(), e);
    }
  }

  private static boolean isIndex(String contentType, byte[] bytes, ImageReference ref) {
    if (MediaTypes.INDEXES.contains(contentType)) {
      return true;
    }
    if (MediaTypes.MANIFESTS.contains(contentType)) {
      return false;
    }
    JsonNode n = Json.read(bytes, "manifest of " + ref);
    String mt = Json.text(n, "mediaType");
    if (mt != null && mt.contains("manifest.v1")) {
      throw new ImageException(ref + " has a Docker schema 1 manifest, which is not supported; push it again with a current tool");
    }
    if (mt != null) {
      return MediaTypes.INDEXES.contains(mt);
    }
    return n.has("manifests");
  }

  private void fetchBlob(RegistrySession s, ImageReference ref, Descriptor d, BlobStore blobs) {
    if (blobs.contains(d.digest())) {
      return;
    }
    URI uri = s.apiUri("/v2/" + ref.repository() + "/blobs/" + d.digest());
    HttpResponse<InputStream> r = s.get(uri, null);
    try (InputStream body = r.body()) {
      s.checkOk(r, body, "blob " + d.digest() + " of " + ref);
      blobDownloads.incrementAndGet();
      blobs.put(body, d.digest(), d.size());
      log.debug("{}: blob {} ({} bytes) stored", ref, d.digest().shortHex(), d.size());
    } catch (IOException e) {
      throw new ImageException.Unavailable("downloading blob " + d.digest() + " of " + ref + " failed: " + e.getMessage(), e);
    }
  }

  private static String errorDetail(InputStream body) {
    String detail = RegistrySession.errorMessage(body);
    return detail.isEmpty() ? "" : " (" + detail + ")";
  }
}
