package dev.flotilla.node.tls;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A throw-away certificate authority for local clusters and tests, made with {@code openssl}
 * (Debian's, on every machine this runs on; nothing is fetched): {@code ca.crt}/{@code ca.key},
 * and certificates it issues, each {@code NAME.crt} + {@code NAME.key} (RSA 2048, PKCS#8, 0600,
 * in a 0700 directory). Not for production: the CA key sits next to what it signs.
 */
public final class DevCertificates {
  /** The subject name every node certificate carries: Pekko's peer check wants one in common. */
  public static final String CLUSTER_NAME = "flotilla-cluster";

  private final Path dir;

  private DevCertificates(Path dir) {
    this.dir = dir;
  }

  /** A new CA in {@code dir} (created 0700), named {@code caName}. */
  public static DevCertificates createCa(Path dir, String caName) throws IOException {
    Files.createDirectories(dir);
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
    DevCertificates c = new DevCertificates(dir);
    Path ext = dir.resolve("ca.ext");
    Files.writeString(ext, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        + "subjectKeyIdentifier=hash\n", StandardCharsets.US_ASCII);
    c.genKey("ca");
    c.openssl("req", "-new", "-key", "ca.key", "-subj", "/CN=" + caName, "-out", "ca.csr");
    c.openssl("x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "3650", "-sha256",
        "-set_serial", serial(), "-extfile", "ca.ext", "-out", "ca.crt");
    Files.delete(dir.resolve("ca.csr"));
    Files.delete(ext);
    return c;
  }

  public Path dir() {
    return dir;
  }

  public Path caCert() {
    return dir.resolve("ca.crt");
  }

  public Path cert(String name) {
    return dir.resolve(name + ".crt");
  }

  public Path key(String name) {
    return dir.resolve(name + ".key");
  }

  /**
   * Issues {@code name}.crt/.key with common name {@code cn}, usable as a TLS server and client,
   * valid for the given host names and IP addresses (subject alternative names).
   */
  public DevCertificates issue(String name, String cn, List<String> hosts) throws IOException {
    List<String> sans = new ArrayList<>();
    sans.add("DNS:" + cn);
    for (String h : hosts) sans.add((h.matches("[0-9.]+") || h.contains(":") ? "IP:" : "DNS:") + h);
    Path ext = dir.resolve(name + ".ext");
    Files.writeString(ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        + "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=" + String.join(",", sans) + "\n", StandardCharsets.US_ASCII);
    genKey(name);
    openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn, "-out", name + ".csr");
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", serial(),
        "-days", "825", "-sha256", "-extfile", name + ".ext", "-out", name + ".crt");
    Files.delete(dir.resolve(name + ".csr"));
    Files.delete(ext);
    return this;
  }

  private void genKey(String name) throws IOException {
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", name + ".key");
    Files.setPosixFilePermissions(dir.resolve(name + ".key"), PosixFilePermissions.fromString("rw-------"));
  }

  private static String serial() {
    byte[] b = new byte[16];
    new SecureRandom().nextBytes(b);
    b[0] &= 0x7f;
    return "0x" + HexFormat.of().formatHex(b);
  }

  private void openssl(String... args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add("openssl");
    cmd.addAll(List.of(args));
    Process p;
    try {
      p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
    } catch (IOException e) {
      throw new IOException("cannot run openssl to make the local cluster's certificates (apt-get install openssl): "
          + e.getMessage(), e);
    }
    p.getOutputStream().close();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    try {
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException("openssl " + args[0] + " did not finish within 60 s");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
      throw new IOException("interrupted while making certificates", e);
    }
    if (p.exitValue() != 0) throw new IOException("openssl " + String.join(" ", args) + " failed: " + out.strip());
  }
}
