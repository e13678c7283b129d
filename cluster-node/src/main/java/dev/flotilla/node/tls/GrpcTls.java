package dev.flotilla.node.tls;

import com.typesafe.config.Config;
import java.io.IOException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Optional;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import org.apache.pekko.http.javadsl.ConnectionContext;
import org.apache.pekko.http.javadsl.HttpsConnectionContext;

/**
 * TLS of the node's gRPC port, from {@code flotilla.node.grpc.tls} (node.conf): a server
 * certificate and key (PEM), optionally client certificates checked against a CA. Without a
 * certificate the port is plaintext, which a node allows only on a loopback interface unless
 * {@code flotilla.node.grpc.allow-plaintext} says otherwise: a bearer token sent in clear over a
 * network is anyone's.
 */
public final class GrpcTls {
  public enum ClientAuth { REQUIRED, OPTIONAL }

  /** What the port serves; {@code context} is empty for plaintext. */
  public record Settings(Optional<HttpsConnectionContext> context, String description) {}

  private GrpcTls() {}

  public static Settings fromConfig(Config grpc) throws IOException {
    Config tls = grpc.getConfig("tls");
    String cert = tls.getString("cert-file");
    String key = tls.getString("key-file");
    String clientCa = tls.getString("client-ca-file");
    String iface = grpc.getString("interface");
    if (cert.isEmpty() != key.isEmpty()) {
      throw new IllegalArgumentException("flotilla.node.grpc.tls: give both cert-file and key-file (FLOTILLA_GRPC_TLS_CERT,"
          + " FLOTILLA_GRPC_TLS_KEY), or neither for plaintext on loopback");
    }
    if (cert.isEmpty()) {
      if (!clientCa.isEmpty()) {
        throw new IllegalArgumentException("flotilla.node.grpc.tls.client-ca-file is set but the port has no certificate:"
            + " set cert-file and key-file too");
      }
      if (!Loopback.is(iface) && !grpc.getBoolean("allow-plaintext")) {
        throw new IllegalArgumentException("refusing to serve plaintext gRPC on " + iface + ", which is not a loopback"
            + " interface: bearer tokens would cross the network in clear. Set flotilla.node.grpc.tls.cert-file and key-file"
            + " (env FLOTILLA_GRPC_TLS_CERT, FLOTILLA_GRPC_TLS_KEY; PEM), or serve on 127.0.0.1 (--grpc-host), or, behind a"
            + " TLS-terminating proxy on this host only, set flotilla.node.grpc.allow-plaintext = on (FLOTILLA_GRPC_ALLOW_PLAINTEXT=on)");
      }
      return new Settings(Optional.empty(), "plaintext");
    }
    ClusterTls.warnIfOthersCanRead(Path.of(key), "flotilla.node.grpc.tls.key-file");
    ClientAuth auth = clientAuth(tls.getString("client-auth"));
    SSLContext ctx = sslContext(Path.of(cert), Path.of(key), clientCa.isEmpty() ? null : Path.of(clientCa));
    boolean clientCerts = !clientCa.isEmpty();
    HttpsConnectionContext https = ConnectionContext.httpsServer(() -> {
      SSLEngine engine = ctx.createSSLEngine();
      engine.setUseClientMode(false);
      engine.setEnabledProtocols(new String[] {"TLSv1.3", "TLSv1.2"});
      if (clientCerts && auth == ClientAuth.REQUIRED) engine.setNeedClientAuth(true);
      else if (clientCerts) engine.setWantClientAuth(true);
      return engine;
    });
    String desc = "tls" + (clientCerts ? " (client certificates " + auth.name().toLowerCase() + ", CA " + clientCa + ")" : "");
    return new Settings(Optional.of(https), desc);
  }

  static ClientAuth clientAuth(String value) {
    return switch (value) {
      case "required" -> ClientAuth.REQUIRED;
      case "optional" -> ClientAuth.OPTIONAL;
      default -> throw new IllegalArgumentException("flotilla.node.grpc.tls.client-auth must be required or optional, is '" + value + "'");
    };
  }

  /** Presents {@code cert}/{@code key}; trusts {@code clientCa} for client certificates (null: none asked for). */
  static SSLContext sslContext(Path cert, Path key, Path clientCa) throws IOException {
    try {
      SSLContext ctx = SSLContext.getInstance("TLS");
      TrustManager[] trust = clientCa == null ? null : PemFiles.trustManagers(clientCa).getTrustManagers();
      ctx.init(PemFiles.keyManagers(cert, key).getKeyManagers(), trust, new SecureRandom());
      return ctx;
    } catch (GeneralSecurityException e) {
      throw new IOException("flotilla.node.grpc.tls: " + e.getMessage(), e);
    }
  }
}
