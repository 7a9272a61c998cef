#!/usr/bin/env bash
# Builds and tests the Java client from Debian packages, without Maven or a Java registry:
#   target/classes         the library and the command line (javac --release 17)
#   target/gleam-client.jar  runnable jar, Jackson unpacked into it (java -jar works alone)
#   target/test-classes    the JUnit 5 tests, run with JUnit's console launcher against the jar
# Installs OpenJDK 17, JUnit 5 and Jackson with apt-get when javac or the jars are missing
# (GLEAM_JAVA_NO_INSTALL=1 turns that off). JAVA_LIB: where the jars are (/usr/share/java).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
lib="${JAVA_LIB:-/usr/share/java}"
jackson=(jackson-annotations jackson-core jackson-databind)
launcher="$lib/junit-platform-console-standalone.jar"

missing() {
    command -v javac >/dev/null 2>&1 || return 0
    for jar in "${jackson[@]}"; do [[ -f "$lib/$jar.jar" ]] || return 0; done
    [[ -f "$launcher" ]] || return 0
    return 1
}

if missing; then
    if [[ "${GLEAM_JAVA_NO_INSTALL:-0}" == 1 ]]; then
        echo "build.sh: javac or the JUnit 5 / Jackson jars in $lib are missing" >&2
        exit 1
    fi
    packages=(openjdk-17-jdk-headless junit5 libjackson2-databind-java)
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "build.sh: install ${packages[*]} (apt-get, as root)" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "build.sh: installing ${packages[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null \
        || { "${sudo[@]}" apt-get update -q >/dev/null \
            && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null; }
fi

cp_jackson="$(printf "$lib/%s.jar:" "${jackson[@]}")"
cp_jackson="${cp_jackson%:}"
javac_flags=(--release 17 -encoding UTF-8 -Xlint:all -Werror -implicit:none)

rm -rf target/classes target/test-classes target/jar target/gleam-client.jar
mkdir -p target/classes target/test-classes target/jar

# 1. the library and the command line
find src/main/java -name '*.java' > target/main-sources.txt
javac "${javac_flags[@]}" -cp "$cp_jackson" -d target/classes @target/main-sources.txt

# 2. the runnable jar: our classes and Jackson's, Jackson's licence notices kept per jar
cp -R target/classes/. target/jar/
for jar in "${jackson[@]}"; do
    rm -rf target/unpack && mkdir -p target/unpack
    (cd target/unpack && jar xf "$lib/$jar.jar")
    mkdir -p "target/jar/META-INF/licenses/$jar"
    for notice in LICENSE NOTICE; do
        if [[ -f "target/unpack/META-INF/$notice" ]]; then
            mv "target/unpack/META-INF/$notice" "target/jar/META-INF/licenses/$jar/"
        fi
    done
    rm -f target/unpack/META-INF/MANIFEST.MF target/unpack/META-INF/*.SF target/unpack/META-INF/*.RSA \
        target/unpack/META-INF/*.DSA target/unpack/module-info.class
    cp -R target/unpack/. target/jar/
done
rm -rf target/unpack
jar --create --file target/gleam-client.jar --main-class org.gleammri.client.cli.Main -C target/jar .
java -jar target/gleam-client.jar --help >/dev/null

# 3. the tests, against the jar
find src/test/java -name '*.java' > target/test-sources.txt
javac "${javac_flags[@]}" -cp "target/gleam-client.jar:$launcher" -d target/test-classes @target/test-sources.txt
java -jar "$launcher" --disable-banner --fail-if-no-tests --details=summary \
    --class-path "target/test-classes:target/gleam-client.jar" --scan-class-path target/test-classes

echo "build.sh: $here/target/gleam-client.jar"
