package dev.flotilla.node.tls;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigValueFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Mutual TLS between nodes (Artery's {@code tls-tcp}), from {@code flotilla.cluster.tls}
 * (cluster.conf). Every node presents a certificate from the cluster's CA and accepts only peers
 * that do: a process without one can neither join nor deliver a message to any actor, since the
 * handshake fails before Artery reads a byte. Pekko's {@code RotatingKeysSSLEngineProvider} reads
 * the PEM files (and re-reads them every {@code ssl-context-cache-ttl}, so certificates can
 * rotate) and, after the handshake, also requires the peer's certificate to share a subject name
 * (CN or DNS SAN) with the node's own: a client certificate of the same CA without it is refused.
 *
 * <p>Without certificates Artery is plaintext, which a node allows only when it binds Artery to
 * loopback (the standalone default, 127.0.0.1:25520) unless {@code flotilla.cluster.tls.allow-plaintext}
 * is on: anyone who reaches a plaintext Artery port can join and act as any tenant.
 */
public final class ClusterTls {
  private static final Logger log = LoggerFactory.getLogger(ClusterTls.class);
  static final String PROVIDER = "org.apache.pekko.remote.artery.tcp.ssl.RotatingKeysSSLEngineProvider";

  private ClusterTls() {}

  /** {@code config} with Artery switched to mutual TLS when certificates are configured; refuses plaintext off loopback. */
  public static Config apply(Config config) throws IOException {
    Config tls = config.getConfig("flotilla.cluster.tls");
    String cert = tls.getString("cert-file");
    String key = tls.getString("key-file");
    String ca = tls.getString("ca-file");
    Config artery = config.getConfig("pekko.remote.artery");
    if (cert.isEmpty() && key.isEmpty() && ca.isEmpty()) {
      if (artery.getString("transport").equals("tls-tcp")) return config; // the operator configured Pekko directly
      String bind = artery.getString("bind.hostname");
      String host = bind.isEmpty() ? artery.getString("canonical.hostname") : bind;
      if (!Loopback.is(host) && !tls.getBoolean("allow-plaintext")) {
        throw new IllegalArgumentException("refusing to run the cluster transport (Artery) in plaintext on " + host
            + ", which is not loopback: anyone who reaches it could join the cluster and act as any tenant. Set"
            + " flotilla.cluster.tls.cert-file, key-file and ca-file (env FLOTILLA_CLUSTER_TLS_CERT, FLOTILLA_CLUSTER_TLS_KEY,"
            + " FLOTILLA_CLUSTER_TLS_CA; PEM, RSA key, every node's certificate from the cluster's CA with a common subject"
            + " name), or bind Artery to 127.0.0.1 (--artery-host), or, on a network only the nodes reach,"
            + " flotilla.cluster.tls.allow-plaintext = on (FLOTILLA_CLUSTER_TLS_ALLOW_PLAINTEXT=on)");
      }
      return config;
    }
    if (cert.isEmpty() || key.isEmpty() || ca.isEmpty()) {
      throw new IllegalArgumentException("flotilla.cluster.tls: give all of cert-file, key-file and ca-file"
          + " (FLOTILLA_CLUSTER_TLS_CERT, FLOTILLA_CLUSTER_TLS_KEY, FLOTILLA_CLUSTER_TLS_CA)");
    }
    check(Path.of(cert), Path.of(key), Path.of(ca));
    String p = "pekko.remote.artery.";
    return config
        .withValue(p + "transport", ConfigValueFactory.fromAnyRef("tls-tcp"))
        .withValue(p + "ssl.ssl-engine-provider", ConfigValueFactory.fromAnyRef(PROVIDER))
        .withValue(p + "ssl.rotating-keys-engine.cert-file", ConfigValueFactory.fromAnyRef(Path.of(cert).toAbsolutePath().toString()))
        .withValue(p + "ssl.rotating-keys-engine.key-file", ConfigValueFactory.fromAnyRef(Path.of(key).toAbsolutePath().toString()))
        .withValue(p + "ssl.rotating-keys-engine.ca-cert-file", ConfigValueFactory.fromAnyRef(Path.of(ca).toAbsolutePath().toString()));
  }

  /**
   * A private key others can read is worth less, but secret mounts (a Kubernetes secret is 0644
   * unless told otherwise) often are: say so rather than refuse to start.
   */
  static void warnIfOthersCanRead(Path key, String setting) {
    try {
      Set<PosixFilePermission> perms = Files.getPosixFilePermissions(key);
      if (perms.stream().anyMatch(p -> p.name().startsWith("GROUP") || p.name().startsWith("OTHERS"))) {
        log.warn("{} {} is {}: group or others can read this private key; run `chmod 600 {}`", setting, key,
            PosixFilePermissions.toString(perms), key);
      }
    } catch (IOException | UnsupportedOperationException e) {
      // the key is read next, and a failure there says what is wrong
    }
  }

  /** Fails at start, naming the file, what Pekko would otherwise refuse on the first connection only. */
  static void check(Path cert, Path key, Path ca) throws IOException {
    warnIfOthersCanRead(key, "flotilla.cluster.tls.key-file");
    List<X509Certificate> chain = PemFiles.certificates(cert);
    PrivateKey k = PemFiles.privateKey(key);
    if (!k.getAlgorithm().equals("RSA")) {
      throw new IOException("flotilla.cluster.tls.key-file " + key + " is an " + k.getAlgorithm()
          + " key: Pekko's cluster transport reads RSA keys only (openssl genpkey -algorithm RSA)");
    }
    X509Certificate caCert = PemFiles.certificates(ca).get(0);
    try {
      chain.get(0).verify(caCert.getPublicKey());
    } catch (GeneralSecurityException e) {
      throw new IOException("flotilla.cluster.tls.cert-file " + cert + " is not signed by the CA in " + ca
          + " (the node certificate must be issued by the cluster's root CA directly)", e);
    }
  }
}
