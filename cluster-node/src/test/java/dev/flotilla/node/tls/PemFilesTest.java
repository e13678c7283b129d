package dev.flotilla.node.tls;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPairGenerator;
import java.security.interfaces.RSAPrivateCrtKey;
import java.util.Arrays;
import java.util.Base64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PemFilesTest {
  @TempDir Path dir;

  private static String pem(String type, byte[] der) {
    return "-----BEGIN " + type + "-----\n" + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(der)
        + "\n-----END " + type + "-----\n";
  }

  @Test
  void readsPkcs8AndPkcs1RsaKeysAlike() throws Exception {
    KeyPairGenerator g = KeyPairGenerator.getInstance("RSA");
    g.initialize(2048);
    RSAPrivateCrtKey key = (RSAPrivateCrtKey) g.generateKeyPair().getPrivate();
    byte[] pkcs8 = key.getEncoded();
    Path p8 = Files.writeString(dir.resolve("k8.pem"), pem("PRIVATE KEY", pkcs8));
    assertEquals(key, PemFiles.privateKey(p8));

    // PKCS#1 is the octet string inside PKCS#8's PrivateKeyInfo: cut it out and read it back
    Path p1 = Files.writeString(dir.resolve("k1.pem"), "junk before\n" + pem("RSA PRIVATE KEY", pkcs1Of(pkcs8)));
    assertEquals(key, PemFiles.privateKey(p1));
  }

  @Test
  void saysWhatIsWrongWithAFile() throws Exception {
    Path enc = Files.writeString(dir.resolve("enc.pem"), pem("ENCRYPTED PRIVATE KEY", new byte[] {1, 2, 3}));
    IOException e = assertThrows(IOException.class, () -> PemFiles.privateKey(enc));
    assertTrue(e.getMessage().contains("encrypted"), e.getMessage());
    IOException none = assertThrows(IOException.class, () -> PemFiles.certificates(enc));
    assertTrue(none.getMessage().contains("no PEM certificate"), none.getMessage());
    IOException missing = assertThrows(IOException.class, () -> PemFiles.certificates(dir.resolve("nope.crt")));
    assertTrue(missing.getMessage().contains("no such file"), missing.getMessage());
  }

  /** The last element of the PrivateKeyInfo SEQUENCE: an OCTET STRING holding the RSAPrivateKey. */
  private static byte[] pkcs1Of(byte[] pkcs8) {
    int i = 1 + lengthBytes(pkcs8, 1); // outer SEQUENCE header
    i += 3; // version INTEGER 0
    i += 2 + (pkcs8[i + 1] & 0xff); // AlgorithmIdentifier (short form)
    assertEquals(0x04, pkcs8[i]);
    int len = length(pkcs8, i + 1);
    int start = i + 1 + lengthBytes(pkcs8, i + 1);
    return Arrays.copyOfRange(pkcs8, start, start + len);
  }

  private static int lengthBytes(byte[] d, int at) {
    return (d[at] & 0x80) == 0 ? 1 : 1 + (d[at] & 0x7f);
  }

  private static int length(byte[] d, int at) {
    if ((d[at] & 0x80) == 0) return d[at];
    int n = 0;
    for (int k = 1; k <= (d[at] & 0x7f); k++) n = (n << 8) | (d[at + k] & 0xff);
    return n;
  }
}
