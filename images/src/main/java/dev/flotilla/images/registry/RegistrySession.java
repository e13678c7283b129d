package dev.flotilla.images.registry;

import com.fasterxml.jackson.databind.JsonNode;
import dev.flotilla.images.Credentials;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.images.oci.Json;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * The requests of one pull against one registry: the transport rule (https unless loopback or
 * configured insecure), the 401 → credentials or token → retry dance, and redirects followed by
 * hand so credentials never travel to another host and https never drops to http.
 */
final class RegistrySession {
  static final String USER_AGENT = "flotilla-images";
  private static final int MAX_REDIRECTS = 5;
  private static final long MAX_TOKEN_RESPONSE = 1L << 20;
  private static final long MAX_ERROR_BODY = 64 * 1024;
  private static final Pattern IPV4_LOOPBACK = Pattern.compile("127\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}");

  private final HttpClient http;
  private final RegistryConfig config;
  private final ImageReference ref;
  private final Credentials creds;
  private final URI base;
  /** The Authorization header for the registry host, once known; never sent anywhere else. */
  private String authorization;

  RegistrySession(HttpClient http, RegistryConfig config, ImageReference ref, Credentials creds) {
    this.http = http;
    this.config = config;
    this.ref = ref;
    this.creds = creds;
    String host = hostOf(ref.registry());
    String scheme = plainHttpAllowed(host, ref.registry(), config) ? "http" : "https";
    this.base = URI.create(scheme + "://" + ref.registry());
    if (creds instanceof Credentials.TokenFile t) {
      authorization = "Bearer " + t.token();
    } else if (creds instanceof Credentials.Token t) {
      authorization = "Bearer " + t.token();
    }
  }

  URI apiUri(String path) {
    return base.resolve(path);
  }

  /** GET with authentication and redirects; the caller closes the body. */
  HttpResponse<InputStream> get(URI uri, String accept) {
    boolean authenticated = false;
    for (int hops = 0; ; ) {
      checkTransport(uri);
      boolean registryHost = base.getRawAuthority().equalsIgnoreCase(String.valueOf(uri.getRawAuthority()))
          && base.getScheme().equals(uri.getScheme());
      HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(config.requestTimeout()).header("User-Agent", USER_AGENT).GET();
      if (accept != null) {
        b.header("Accept", accept);
      }
      if (registryHost && authorization != null) {
        b.header("Authorization", authorization);
      }
      HttpResponse<InputStream> r = send(b.build());
      int sc = r.statusCode();
      if (sc == 401 && registryHost && !authenticated) {
        List<AuthChallenge> challenges = AuthChallenge.parse(r.headers().allValues("WWW-Authenticate"));
        close(r);
        authenticate(challenges);
        authenticated = true;
        continue;
      }
      if (sc == 301 || sc == 302 || sc == 303 || sc == 307 || sc == 308) {
        String location = r.headers().firstValue("Location").orElse(null);
        close(r);
        if (location == null || ++hops > MAX_REDIRECTS) {
          throw new ImageException("registry " + ref.registry() + ": too many or broken redirects for " + uri);
        }
        URI next = uri.resolve(location);
        if (uri.getScheme().equals("https") && next.getScheme().equals("http")) {
          throw new ImageException("registry " + ref.registry() + " redirected " + uri.getPath() + " from https to http; refused");
        }
        uri = next;
        continue;
      }
      return r;
    }
  }

  /** Throws a message with the registry's own error text unless {@code r} is a 200. */
  void checkOk(HttpResponse<InputStream> r, InputStream body, String what) {
    int sc = r.statusCode();
    if (sc == 200) {
      return;
    }
    String detail = errorMessage(body);
    String hint = switch (sc) {
      case 401 -> "; the registry refused the credentials (configure them for " + ref.registry() + " or pass your own)";
      case 403 -> "; access denied";
      case 404 -> "; not found";
      case 429 -> "; rate limited by the registry, try again later";
      default -> "";
    };
    throw new ImageException("registry " + ref.registry() + " answered " + sc + " for " + what + hint
        + (detail.isEmpty() ? "" : " (" + detail + ")"));
  }

  private void authenticate(List<AuthChallenge> challenges) {
    AuthChallenge bearer = challenges.stream().filter(c -> c.is("Bearer")).findFirst().orElse(null);
    if (bearer != null && !(creds instanceof Credentials.TokenFile) && !(creds instanceof Credentials.Token)) {
      authorization = "Bearer " + fetchToken(bearer);
      return;
    }
    if (challenges.stream().anyMatch(c -> c.is("Basic")) && creds instanceof Credentials.Basic b) {
      authorization = basic(b);
      return;
    }
    throw new ImageException("registry " + ref.registry() + " requires authentication for " + ref.repository()
        + (creds == null ? "; no credentials are configured for it" : "; the configured credentials were refused"));
  }

  /** The token dance of the distribution spec's token authentication: anonymous, or with Basic credentials. */
  private String fetchToken(AuthChallenge c) {
    String realm = c.params().get("realm");
    if (realm == null || realm.isBlank()) {
      throw new ImageException("registry " + ref.registry() + " asked for a bearer token without naming a realm");
    }
    String scope = c.params().getOrDefault("scope", "repository:" + ref.repository() + ":pull");
    StringBuilder q = new StringBuilder(realm).append(realm.contains("?") ? '&' : '?');
    if (c.params().containsKey("service")) {
      q.append("service=").append(enc(c.params().get("service"))).append('&');
    }
    q.append("scope=").append(enc(scope));
    URI uri;
    try {
      uri = URI.create(q.toString());
    } catch (IllegalArgumentException e) {
      throw new ImageException("registry " + ref.registry() + " named an invalid token realm: " + realm);
    }
    if (uri.getScheme() == null || uri.getHost() == null) {
      throw new ImageException("registry " + ref.registry() + " named an invalid token realm: " + realm);
    }
    checkTransport(uri);
    HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(config.requestTimeout()).header("User-Agent", USER_AGENT).GET();
    if (creds instanceof Credentials.Basic basic) {
      b.header("Authorization", basic(basic));
    }
    HttpResponse<InputStream> r = send(b.build());
    try (InputStream body = r.body()) {
      if (r.statusCode() != 200) {
        String detail = errorMessage(body);
        throw new ImageException("token service " + uri.getHost() + " answered " + r.statusCode() + " for " + ref.repository()
            + (r.statusCode() == 401 ? "; the credentials for " + ref.registry() + " were refused" : "")
            + (detail.isEmpty() ? "" : " (" + detail + ")"));
      }
      JsonNode n = Json.read(readBounded(body, MAX_TOKEN_RESPONSE, "token response"), "token response");
      String token = Json.text(n, "token");
      if (token == null || token.isEmpty()) {
        token = Json.text(n, "access_token");
      }
      if (token == null || token.isEmpty() || token.chars().anyMatch(ch -> ch < 0x21 || ch > 0x7e)) {
        throw new ImageException("token service " + uri.getHost() + " returned no usable token");
      }
      return token;
    } catch (IOException e) {
      throw new ImageException("token request to " + uri.getHost() + " failed: " + e.getMessage(), e);
    }
  }

  private HttpResponse<InputStream> send(HttpRequest req) {
    try {
      return http.send(req, IdleTimeoutBody.handler(config.readIdleTimeout()));
    } catch (java.net.http.HttpTimeoutException e) {
      throw new ImageException.Unavailable("registry request to " + req.uri().getHost() + " timed out after " + config.requestTimeout(), e);
    } catch (IOException e) {
      boolean tls = false;
      for (Throwable t = e; t != null; t = t.getCause()) {
        tls |= t instanceof javax.net.ssl.SSLException;
      }
      throw new ImageException.Unavailable("cannot reach " + req.uri().getScheme() + "://" + req.uri().getRawAuthority() + ": " + e
          + (tls ? "; if " + req.uri().getRawAuthority() + " serves plain http, list it in " + RegistryConfig.INSECURE_KEY : ""), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ImageException("interrupted while talking to " + req.uri().getHost(), e);
    }
  }

  private void checkTransport(URI uri) {
    String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
    if (scheme.equals("https")) {
      return;
    }
    if (scheme.equals("http") && plainHttpAllowed(uri.getHost(), uri.getRawAuthority(), config)) {
      return;
    }
    throw new ImageException("refusing " + (scheme.isEmpty() ? "a non-http(s) URL" : "plain " + scheme) + " to "
        + uri.getRawAuthority() + " (for " + ref.registry() + "): only loopback hosts and hosts listed in "
        + RegistryConfig.INSECURE_KEY + " may be reached without TLS");
  }

  static boolean plainHttpAllowed(String host, String authority, RegistryConfig config) {
    return isLoopback(host) || config.insecureRegistries().contains(authority) || config.insecureRegistries().contains(host);
  }

  /** By name only (no DNS): a name that merely resolves to 127.0.0.1 does not count. */
  static boolean isLoopback(String host) {
    if (host == null) {
      return false;
    }
    String h = host.toLowerCase(Locale.ROOT);
    if (h.startsWith("[") && h.endsWith("]")) {
      h = h.substring(1, h.length() - 1);
    }
    return h.equals("localhost") || h.equals("::1") || h.equals("0:0:0:0:0:0:0:1") || IPV4_LOOPBACK.matcher(h).matches();
  }

  private static String hostOf(String authority) {
    if (authority.startsWith("[")) {
      return authority.substring(0, authority.indexOf(']') + 1);
    }
    int colon = authority.indexOf(':');
    return colon < 0 ? authority : authority.substring(0, colon);
  }

  static byte[] readBounded(InputStream in, long max, String what) throws IOException {
    byte[] b = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, max + 1));
    if (b.length > max) {
      throw new ImageException(what + " is larger than " + max + " bytes; refused");
    }
    return b;
  }

  /** The messages of an OCI error body ({@code {"errors":[{"code","message"}]}}), or "". */
  static String errorMessage(InputStream body) {
    try {
      byte[] b = body.readNBytes((int) MAX_ERROR_BODY);
      JsonNode n = Json.MAPPER.readTree(b);
      if (n != null && n.has("errors") && n.get("errors").isArray()) {
        return java.util.stream.StreamSupport.stream(n.get("errors").spliterator(), false)
            .map(e -> Json.text(e, "code") + ": " + Json.text(e, "message"))
            .collect(Collectors.joining("; "));
      }
    } catch (IOException | RuntimeException e) {
      // not an OCI error body: the status says enough
    }
    return "";
  }

  private static String basic(Credentials.Basic b) {
    return "Basic " + Base64.getEncoder().encodeToString((b.user() + ":" + b.password()).getBytes(StandardCharsets.UTF_8));
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8);
  }

  private static void close(HttpResponse<InputStream> r) {
    try (InputStream in = r.body()) {
      in.readNBytes((int) MAX_ERROR_BODY);
    } catch (IOException ignored) {
      // the connection is dropped instead of reused
    }
  }
}
