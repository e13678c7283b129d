package dev.flotilla.images.registry;

import dev.flotilla.images.Credentials;
import java.time.Duration;
import java.util.Map;
import java.util.Set;

/**
 * How this node talks to registries.
 *
 * @param insecureRegistries {@code host} or {@code host:port} entries reached over plain http
 *     ({@code flotilla.images.insecure-registries}); loopback hosts always are
 * @param auth credentials per registry host[:port] ({@code registry-1.docker.io} for Docker Hub),
 *     used when a pull brings none of its own
 * @param connectTimeout TCP/TLS connect
 * @param requestTimeout until a response's headers arrive, per request
 * @param readIdleTimeout a response body that sends nothing for this long is abandoned
 * @param maxManifestBytes manifests, indexes and configs are read whole: this bounds them
 */
public record RegistryConfig(
    Set<String> insecureRegistries,
    Map<String, Credentials> auth,
    Duration connectTimeout,
    Duration requestTimeout,
    Duration readIdleTimeout,
    long maxManifestBytes) {

  public static final long DEFAULT_MAX_MANIFEST_BYTES = 4L << 20;
  public static final String INSECURE_KEY = "flotilla.images.insecure-registries";

  public RegistryConfig {
    insecureRegistries = Set.copyOf(insecureRegistries);
    auth = Map.copyOf(auth);
  }

  public static RegistryConfig defaults() {
    return new RegistryConfig(Set.of(), Map.of(), Duration.ofSeconds(10), Duration.ofSeconds(60), Duration.ofSeconds(60),
        DEFAULT_MAX_MANIFEST_BYTES);
  }

  public RegistryConfig withInsecureRegistries(Set<String> hosts) {
    return new RegistryConfig(hosts, auth, connectTimeout, requestTimeout, readIdleTimeout, maxManifestBytes);
  }

  public RegistryConfig withAuth(Map<String, Credentials> byHost) {
    return new RegistryConfig(insecureRegistries, byHost, connectTimeout, requestTimeout, readIdleTimeout, maxManifestBytes);
  }

  public RegistryConfig withTimeouts(Duration connect, Duration request, Duration readIdle) {
    return new RegistryConfig(insecureRegistries, auth, connect, request, readIdle, maxManifestBytes);
  }
}
