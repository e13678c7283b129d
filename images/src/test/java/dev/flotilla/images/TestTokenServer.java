package dev.flotilla.images;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.flotilla.images.oci.Json;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A token service for docker-registry's {@code auth: token} (the distribution token spec): signs
 * JWTs with a throwaway key whose self-signed certificate the registry trusts. {@code alice:secret}
 * gets what she asks for; anonymous callers get pull on {@code public/*} only.
 */
public final class TestTokenServer implements AutoCloseable {
  public static final String SERVICE = "flotilla-test-registry";
  public static final String ISSUER = "flotilla-test-issuer";

  private final HttpServer server;
  private final PrivateKey key;
  private final String certDer;
  private final Path certPem;
  final AtomicInteger withBasic = new AtomicInteger();
  final AtomicInteger anonymous = new AtomicInteger();

  private TestTokenServer(HttpServer server, PrivateKey key, String certDer, Path certPem) {
    this.server = server;
    this.key = key;
    this.certDer = certDer;
    this.certPem = certPem;
  }

  public static TestTokenServer start(Path dir) throws Exception {
    TestTools.require("openssl", "openssl");
    Path keyPem = dir.resolve("token-key.pem");
    Path certPem = dir.resolve("token-cert.pem");
    TestTools.run(dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPem.toString(),
        "-out", certPem.toString(), "-subj", "/CN=flotilla-test-token", "-days", "2");
    String k = Files.readString(keyPem).replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
    PrivateKey key = KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(k)));
    X509Certificate cert;
    try (var in = Files.newInputStream(certPem)) {
      cert = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
    }
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    TestTokenServer t = new TestTokenServer(server, key, Base64.getEncoder().encodeToString(cert.getEncoded()), certPem);
    server.createContext("/token", t::handle);
    server.start();
    return t;
  }

  /** The registry's {@code auth:} section. */
  public String registryAuthYaml() {
    return "  token:\n"
        + "    realm: http://127.0.0.1:" + server.getAddress().getPort() + "/token\n"
        + "    service: " + SERVICE + "\n"
        + "    issuer: " + ISSUER + "\n"
        + "    rootcertbundle: " + certPem + "\n";
  }

  private void handle(HttpExchange ex) throws IOException {
    Map<String, String> q = new HashMap<>();
    List<String> scopes = new ArrayList<>();
    String query = ex.getRequestURI().getRawQuery();
    for (String kv : query == null ? new String[0] : query.split("&")) {
      String[] p = kv.split("=", 2);
      String v = p.length > 1 ? URLDecoder.decode(p[1], StandardCharsets.UTF_8) : "";
      q.put(p[0], v);
      if (p[0].equals("scope")) {
        scopes.add(v);
      }
    }
    String auth = ex.getRequestHeaders().getFirst("Authorization");
    boolean alice = false;
    if (auth != null && auth.startsWith("Basic ")) {
      String up = new String(Base64.getDecoder().decode(auth.substring(6)), StandardCharsets.UTF_8);
      if (!up.equals("alice:secret")) {
        reply(ex, 401, "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad user or password\"}]}");
        return;
      }
      alice = true;
      withBasic.incrementAndGet();
    } else {
      anonymous.incrementAndGet();
    }
    ArrayNode access = Json.MAPPER.createArrayNode();
    for (String scope : scopes) {
      String[] s = scope.split(":");
      if (s.length != 3 || !s[0].equals("repository")) {
        continue;
      }
      ArrayNode actions = Json.MAPPER.createArrayNode();
      for (String a : s[2].split(",")) {
        if (alice || (a.equals("pull") && s[1].startsWith("public/"))) {
          actions.add(a);
        }
      }
      ObjectNode entry = access.addObject().put("type", "repository").put("name", s[1]);
      entry.set("actions", actions);
    }
    long now = System.currentTimeMillis() / 1000;
    ObjectNode claims = Json.MAPPER.createObjectNode()
        .put("iss", ISSUER).put("sub", alice ? "alice" : "").put("aud", q.getOrDefault("service", SERVICE))
        .put("exp", now + 300).put("nbf", now - 10).put("iat", now).put("jti", UUID.randomUUID().toString());
    claims.set("access", access);
    ObjectNode header = Json.MAPPER.createObjectNode().put("typ", "JWT").put("alg", "RS256");
    header.putArray("x5c").add(certDer);
    try {
      String signingInput = b64(Json.write(header)) + "." + b64(Json.write(claims));
      Signature sig = Signature.getInstance("SHA256withRSA");
      sig.initSign(key);
      sig.update(signingInput.getBytes(StandardCharsets.US_ASCII));
      String jwt = signingInput + "." + b64(sig.sign());
      reply(ex, 200, "{\"token\":\"" + jwt + "\",\"expires_in\":300}");
    } catch (Exception e) {
      reply(ex, 500, "{}");
    }
  }

  private static String b64(byte[] b) {
    return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
  }

  private static void reply(HttpExchange ex, int status, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", "application/json");
    ex.sendResponseHeaders(status, b.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(b);
    }
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
