package dev.flotilla.images;

import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;
import java.util.regex.Pattern;

/**
 * Debian's {@code docker-registry} (distribution 2.8) on a free port with its own storage,
 * optionally behind htpasswd or token auth. Its access log is the evidence of what was
 * downloaded. {@link #close} kills it.
 */
public final class TestRegistry implements AutoCloseable {
  private final Process process;
  private final Path log;
  private final String host;
  private final int port;
  private final HttpClient http = HttpClient.newHttpClient();

  private TestRegistry(Process process, Path log, String host, int port) {
    this.process = process;
    this.log = log;
    this.host = host;
    this.port = port;
  }

  /**
   * @param bindHost the address to listen on (127.0.0.1, or a non-loopback one)
   * @param authYaml an {@code auth:} section (indented two spaces below it) or "" for none
   */
  public static TestRegistry start(Path dir, String bindHost, String authYaml) throws IOException {
    TestTools.require("docker-registry", "docker-registry");
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    Path storage = Files.createDirectories(dir.resolve("registry-storage"));
    Path config = dir.resolve("registry.yml");
    Files.writeString(config, String.join("\n",
        "version: 0.1",
        "log:",
        "  level: info",
        "storage:",
        "  filesystem:",
        "    rootdirectory: " + storage,
        "  delete:",
        "    enabled: true",
        "http:",
        "  addr: " + bindHost + ":" + port,
        authYaml.isEmpty() ? "" : "auth:\n" + authYaml,
        ""));
    Path log = dir.resolve("registry.log");
    Process p = new ProcessBuilder("docker-registry", "serve", config.toString())
        .redirectErrorStream(true).redirectOutput(log.toFile()).start();
    TestRegistry r = new TestRegistry(p, log, bindHost, port);
    try {
      await("docker-registry answers on " + r.address()).atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(50))
          .until(() -> {
            if (!p.isAlive()) {
              throw new AssertionError("docker-registry exited: " + Files.readString(log));
            }
            return r.status("/v2/") > 0;
          });
    } catch (RuntimeException | AssertionError e) {
      r.close();
      throw e;
    }
    return r;
  }

  public String address() {
    return host + ":" + port;
  }

  public int status(String path) {
    try {
      return http.send(HttpRequest.newBuilder(URI.create("http://" + address() + path)).build(),
          HttpResponse.BodyHandlers.discarding()).statusCode();
    } catch (IOException e) {
      return -1;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return -1;
    }
  }

  /**
   * How many blob GETs of {@code repo} by Flotilla (not by skopeo) the registry has logged up to now: a marker request is
   * sent and awaited in the log first, so everything before it has been logged (no timing).
   */
  public long blobGets(String repo) {
    String marker = UUID.randomUUID().toString();
    status("/v2/?marker=" + marker);
    await("marker in the registry log").atMost(Duration.ofSeconds(10)).pollInterval(Duration.ofMillis(20))
        .until(() -> logText().contains(marker));
    Pattern get = Pattern.compile("\"GET /v2/" + Pattern.quote(repo) + "/blobs/sha256:[0-9a-f]{64} HTTP/1.1\" (200|307) .*\"flotilla-images\"");
    return logText().lines().filter(l -> get.matcher(l).find()).count();
  }

  public String logText() {
    try {
      return Files.readString(log, StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "";
    }
  }

  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }
}
