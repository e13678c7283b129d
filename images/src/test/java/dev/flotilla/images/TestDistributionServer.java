package dev.flotilla.images;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A small server of the distribution API's read side (manifests and blobs, by the spec), for
 * protocol cases Debian's registry cannot produce: multi-platform indexes, blobs redirected to
 * another host, tampered content, oversized manifests, a token realm elsewhere.
 */
public final class TestDistributionServer implements AutoCloseable {
  public record Request(String path, String authorization) {}

  private final HttpServer server;
  private final Map<String, byte[]> manifests = new ConcurrentHashMap<>();
  private final Map<String, String> manifestTypes = new ConcurrentHashMap<>();
  private final Map<String, byte[]> blobs = new ConcurrentHashMap<>();
  public final List<Request> requests = new CopyOnWriteArrayList<>();
  private volatile String requiredBearer;
  private volatile String realm;
  private volatile TestDistributionServer blobHost;
  private volatile boolean stallBlobs;
  private final java.util.concurrent.CountDownLatch closed = new java.util.concurrent.CountDownLatch(1);

  private TestDistributionServer() throws IOException {
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext("/", this::handle);
    server.start();
  }

  public static TestDistributionServer start() throws IOException {
    return new TestDistributionServer();
  }

  public String address() {
    return "127.0.0.1:" + server.getAddress().getPort();
  }

  /** Serves every blob of an OCI layout directory. */
  public TestDistributionServer blobsOf(Path layout) throws IOException {
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(layout.resolve("blobs/sha256"))) {
      for (Path p : ds) {
        blobs.put("sha256:" + p.getFileName(), Files.readAllBytes(p));
      }
    }
    return this;
  }

  public TestDistributionServer blob(String digest, byte[] body) {
    blobs.put(digest, body);
    return this;
  }

  /** {@code ref} is a tag or a digest string. */
  public TestDistributionServer manifest(String repo, String ref, String contentType, byte[] body) {
    manifests.put(repo + "/" + ref, body);
    manifestTypes.put(repo + "/" + ref, contentType);
    return this;
  }

  /** Every /v2 request must carry {@code Bearer token}; others get a 401 naming {@code realm}. */
  public TestDistributionServer requireBearer(String token, String realmUrl) {
    this.requiredBearer = token;
    this.realm = realmUrl;
    return this;
  }

  /** Blob GETs answer 307 to {@code other}, which serves them under /cdn/. */
  public TestDistributionServer redirectBlobsTo(TestDistributionServer other) {
    this.blobHost = other;
    return this;
  }

  /** Blob GETs send their headers and half the body, then nothing until the server closes. */
  public TestDistributionServer stallBlobs() {
    this.stallBlobs = true;
    return this;
  }

  private void handle(HttpExchange ex) throws IOException {
    String path = ex.getRequestURI().getPath();
    String auth = ex.getRequestHeaders().getFirst("Authorization");
    requests.add(new Request(path, auth));
    if (path.startsWith("/cdn/")) {
      send(ex, 200, "application/octet-stream", blobs.get(path.substring(5)));
      return;
    }
    if (requiredBearer != null && !("Bearer " + requiredBearer).equals(auth)) {
      ex.getResponseHeaders().set("WWW-Authenticate", "Bearer realm=\"" + realm + "\",service=\"test\"");
      send(ex, 401, "application/json", "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"token required\"}]}"
          .getBytes(StandardCharsets.UTF_8));
      return;
    }
    int m = path.indexOf("/manifests/");
    int b = path.indexOf("/blobs/");
    if (path.startsWith("/v2/") && m > 0) {
      String key = path.substring(4, m) + "/" + path.substring(m + "/manifests/".length());
      send(ex, manifests.containsKey(key) ? 200 : 404, manifestTypes.getOrDefault(key, "application/json"),
          manifests.getOrDefault(key, "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}"
              .getBytes(StandardCharsets.UTF_8)));
    } else if (path.startsWith("/v2/") && b > 0) {
      String digest = path.substring(b + "/blobs/".length());
      if (stallBlobs && blobs.containsKey(digest)) {
        byte[] body = blobs.get(digest);
        ex.sendResponseHeaders(200, body.length);
        OutputStream out = ex.getResponseBody();
        out.write(body, 0, body.length / 2);
        out.flush();
        try {
          closed.await();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        ex.close();
      } else if (blobHost != null) {
        ex.getResponseHeaders().set("Location", "http://" + blobHost.address() + "/cdn/" + digest);
        send(ex, 307, "text/plain", new byte[0]);
      } else {
        send(ex, blobs.containsKey(digest) ? 200 : 404, "application/octet-stream", blobs.getOrDefault(digest, new byte[0]));
      }
    } else {
      send(ex, 404, "text/plain", new byte[0]);
    }
  }

  private static void send(HttpExchange ex, int status, String type, byte[] body) throws IOException {
    byte[] b = body == null ? new byte[0] : body;
    ex.getResponseHeaders().set("Content-Type", type);
    ex.sendResponseHeaders(status, b.length == 0 ? -1 : b.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(b);
    }
  }

  @Override
  public void close() {
    closed.countDown();
    server.stop(0);
  }
}
