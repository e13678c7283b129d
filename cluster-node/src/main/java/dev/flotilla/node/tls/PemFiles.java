package dev.flotilla.node.tls;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.TrustManagerFactory;

/**
 * PEM certificates and keys to the JDK's key and trust managers, for the node's gRPC port and the
 * CLI alike. Plain JDK (no Scala), so the CLI stays quick to start. Keys: unencrypted PKCS#8
 * ({@code BEGIN PRIVATE KEY}: RSA, EC, Ed25519, as {@code openssl genpkey} writes them) or PKCS#1
 * RSA ({@code BEGIN RSA PRIVATE KEY}). Every failure names the file and what is wrong with it.
 */
public final class PemFiles {
  private static final Pattern BLOCK =
      Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\\s]+?)-----END \\1-----");
  private static final char[] NO_PASSWORD = new char[0];

  private PemFiles() {}

  /** Every certificate in the file, in order (a server's chain: leaf first). */
  public static List<X509Certificate> certificates(Path file) throws IOException {
    List<X509Certificate> certs = new ArrayList<>();
    try {
      CertificateFactory cf = CertificateFactory.getInstance("X.509");
      for (Block b : blocks(file)) {
        if (!b.type().equals("CERTIFICATE")) continue;
        certs.add((X509Certificate) cf.generateCertificate(new ByteArrayInputStream(b.der())));
      }
    } catch (GeneralSecurityException e) {
      throw new IOException(file + ": not a valid PEM certificate: " + e.getMessage(), e);
    }
    if (certs.isEmpty()) throw new IOException(file + ": no PEM certificate in it (-----BEGIN CERTIFICATE-----)");
    return certs;
  }

  public static PrivateKey privateKey(Path file) throws IOException {
    for (Block b : blocks(file)) {
      switch (b.type()) {
        case "PRIVATE KEY":
          return pkcs8(file, b.der());
        case "RSA PRIVATE KEY":
          return pkcs8(file, rsaPkcs1ToPkcs8(b.der()));
        case "ENCRYPTED PRIVATE KEY":
          throw new IOException(file + ": the key is encrypted; give an unencrypted one (openssl pkey -in " + file
              + " -out plain.key), readable by the node's user only");
        default:
          // parameters or certificates next to the key: skip
      }
    }
    throw new IOException(file + ": no PEM private key in it (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)");
  }

  /** Key managers presenting {@code key} with the chain in {@code certFile}. */
  public static KeyManagerFactory keyManagers(Path certFile, Path keyFile) throws IOException {
    List<X509Certificate> chain = certificates(certFile);
    PrivateKey key = privateKey(keyFile);
    try {
      KeyStore ks = KeyStore.getInstance("PKCS12");
      ks.load(null, null);
      ks.setKeyEntry("key", key, NO_PASSWORD, chain.toArray(Certificate[]::new));
      KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
      kmf.init(ks, NO_PASSWORD);
      return kmf;
    } catch (GeneralSecurityException e) {
      throw new IOException(keyFile + " does not go with " + certFile + ": " + e.getMessage(), e);
    }
  }

  /** Trust managers that accept exactly the certificates (CAs) in {@code caFile}. */
  public static TrustManagerFactory trustManagers(Path caFile) throws IOException {
    try {
      KeyStore ts = KeyStore.getInstance("PKCS12");
      ts.load(null, null);
      int i = 0;
      for (X509Certificate c : certificates(caFile)) ts.setCertificateEntry("ca" + i++, c);
      TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      tmf.init(ts);
      return tmf;
    } catch (GeneralSecurityException e) {
      throw new IOException(caFile + ": cannot trust its certificates: " + e.getMessage(), e);
    }
  }

  private record Block(String type, byte[] der) {}

  private static List<Block> blocks(Path file) throws IOException {
    String text;
    try {
      text = Files.readString(file, StandardCharsets.US_ASCII);
    } catch (NoSuchFileException e) {
      throw new IOException(file + ": no such file", e);
    } catch (java.nio.charset.MalformedInputException e) {
      throw new IOException(file + ": not a PEM file (binary DER? convert it: openssl x509 -inform der -in " + file + ")", e);
    }
    List<Block> out = new ArrayList<>();
    Matcher m = BLOCK.matcher(text);
    while (m.find()) {
      try {
        out.add(new Block(m.group(1), Base64.getMimeDecoder().decode(m.group(2))));
      } catch (IllegalArgumentException e) {
        throw new IOException(file + ": a PEM block is not valid base64", e);
      }
    }
    return out;
  }

  private static PrivateKey pkcs8(Path file, byte[] der) throws IOException {
    PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
    for (String alg : new String[] {"RSA", "EC", "Ed25519", "RSASSA-PSS"}) {
      try {
        return KeyFactory.getInstance(alg).generatePrivate(spec);
      } catch (GeneralSecurityException tryNext) {
        // the key names its algorithm inside; KeyFactory wants it up front
      }
    }
    throw new IOException(file + ": not an RSA, EC or Ed25519 private key this JVM can read");
  }

  /** Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo (version 0, rsaEncryption, the key as an octet string). */
  static byte[] rsaPkcs1ToPkcs8(byte[] pkcs1) {
    byte[] algId = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
    byte[] version = {0x02, 0x01, 0x00};
    byte[] octets = der(0x04, pkcs1);
    byte[] body = new byte[version.length + algId.length + octets.length];
    System.arraycopy(version, 0, body, 0, version.length);
    System.arraycopy(algId, 0, body, version.length, algId.length);
    System.arraycopy(octets, 0, body, version.length + algId.length, octets.length);
    return der(0x30, body);
  }

  private static byte[] der(int tag, byte[] content) {
    int n = content.length;
    byte[] len;
    if (n < 0x80) len = new byte[] {(byte) n};
    else if (n < 0x100) len = new byte[] {(byte) 0x81, (byte) n};
    else if (n < 0x10000) len = new byte[] {(byte) 0x82, (byte) (n >> 8), (byte) n};
    else len = new byte[] {(byte) 0x83, (byte) (n >> 16), (byte) (n >> 8), (byte) n};
    byte[] out = new byte[1 + len.length + n];
    out[0] = (byte) tag;
    System.arraycopy(len, 0, out, 1, len.length);
    System.arraycopy(content, 0, out, 1 + len.length, n);
    return out;
  }
}
