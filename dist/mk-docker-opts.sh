#!/bin/sh
# mk-docker-opts.sh: turn the subnet file of weftd (or flanneld) into Docker daemon options.
#
# A drop-in for flannel's script of the same name: the same options and the same output,
# so existing docker.service drop-ins keep working. With the default options it writes
#
#   DOCKER_OPT_BIP="--bip=10.244.5.1/24"
#   DOCKER_OPT_IPMASQ="--ip-masq=false"
#   DOCKER_OPT_MTU="--mtu=1450"
#   DOCKER_OPTS=" --bip=10.244.5.1/24 --ip-masq=false --mtu=1450"
#
# With -6 (weft's addition: flannel's script in flannel-io/flannel's dist/ writes no IPv6
# option, so its users set them by hand) it adds the IPv6 options of a dual-stack or IPv6-only
# network's file, DOCKER_OPT_IPV6="--ipv6 --fixed-cidr-v6=$FLANNEL_IPV6_SUBNET", e.g.
# "--ipv6 --fixed-cidr-v6=fd00:10:0:5::1/64"; without -6 the IPv6 lines are ignored.
#
# Unlike flannel's script it never executes the subnet file (no ".", eval or source): it
# reads KEY=value lines and validates FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_NETWORK,
# FLANNEL_IPV6_SUBNET, FLANNEL_MTU and FLANNEL_IPMASQ. FLANNEL_MTU and FLANNEL_IPMASQ are
# required, and so is a family: FLANNEL_NETWORK with FLANNEL_SUBNET (IPv4), or
# FLANNEL_IPV6_NETWORK with FLANNEL_IPV6_SUBNET (IPv6), or both. An IPv6-only network's file
# has no FLANNEL_SUBNET, so no --bip is made (a note on stderr says so). On any error it
# exits non-zero without touching the output file. The output is written atomically
# (temporary file in the same directory, then mv). Blank lines, # comments and other keys
# in the subnet file are ignored.
#
# Like flannel's script, every DOCKER_OPT_* variable in the environment (e.g.
# DOCKER_OPT_DNS="--dns=10.96.0.10") is output too, and folded into the combined options, in
# byte order of the names; the ones made here replace any of the same name. Values are read
# as data, never evaluated; one holding a double quote, backslash, dollar, backquote or
# newline (which would not survive between the double quotes of the output) is refused.
#
# Exit status: 0 on success, 1 on a bad subnet file or a write error, 2 on a usage error.

set -eu

prog=${0##*/}

usage() {
	cat <<EOF
Usage: $prog [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY] [-6]

Generate Docker daemon options from the subnet file written by weftd (or flanneld).
OPTIONS:
	-f	Path to the subnet file. Defaults to /run/flannel/subnet.env
	-d	Path to the Docker env file to write. Defaults to /run/docker_opts.env
	-i	Output each Docker option as an individual var, e.g. DOCKER_OPT_MTU="--mtu=1450"
	-c	Output the combined Docker options into the DOCKER_OPTS var
	-k	Name of the combined options var (default DOCKER_OPTS); its value in the
		environment, if any, is prepended to the combined options
	-m	Do not output --ip-masq (useful for older Docker versions)
	-6	Include the IPv6 options (--ipv6 --fixed-cidr-v6=FLANNEL_IPV6_SUBNET) when the
		subnet file has FLANNEL_IPV6_SUBNET
	-h	Show this help
Neither -i nor -c means both. Every DOCKER_OPT_* variable in the environment is output
too (and added to the combined options), sorted by name with the ones made here.
EOF
}

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

usage_error() {
	printf '%s: %s\n' "$prog" "$*" >&2
	usage >&2
	exit 2
}

# is_dec VALUE MAXDIGITS: VALUE is an unsigned decimal of at most MAXDIGITS digits, without
# sign or leading zero.
is_dec() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	0) return 0 ;;
	0*) return 1 ;;
	esac
	[ "${#1}" -le "$2" ]
}

# is_ipv4 ADDR: ADDR is a dotted quad, each part 0-255 without leading zeros.
is_ipv4() {
	case $1 in
	'' | *[!0-9.]* | .* | *. | *..*) return 1 ;;
	esac
	_rest=$1
	_parts=0
	while :; do
		_part=${_rest%%.*}
		is_dec "$_part" 3 || return 1
		[ "$_part" -le 255 ] || return 1
		_parts=$((_parts + 1))
		[ "$_rest" != "$_part" ] || break
		_rest=${_rest#*.}
	done
	[ "$_parts" -eq 4 ]
}

# is_cidr VALUE: VALUE is ADDR/LEN with an IPv4 ADDR and LEN 0-32.
is_cidr() {
	case $1 in
	*/*) ;;
	*) return 1 ;;
	esac
	is_ipv4 "${1%/*}" || return 1
	is_dec "${1#*/}" 2 || return 1
	[ "${1#*/}" -le 32 ]
}

# ipv6_groups ADDR: set _groups to the eight 16-bit groups of ADDR in hex, space-separated,
# or fail unless ADDR is an IPv6 address in hex-and-colon form: at most one "::", groups of
# 1-4 hex digits (no zone, no dotted IPv4 tail, which weftd and flanneld never write).
ipv6_groups() {
	case $1 in
	'' | *[!0-9A-Fa-f:]* | *:::* | *::*::* | :[!:]* | *[!:]:) return 1 ;;
	esac
	[ "${#1}" -le 39 ] || return 1
	case $1 in
	*::*)
		ipv6_split "${1%%::*}" || return 1
		_head=$_g _nhead=$_n
		ipv6_split "${1#*::}" || return 1
		[ $((_nhead + _n)) -le 7 ] || return 1
		_zeros=''
		_i=$((_nhead + _n))
		while [ "$_i" -lt 8 ]; do
			_zeros="$_zeros 0"
			_i=$((_i + 1))
		done
		_groups="$_head$_zeros$_g"
		;;
	*)
		ipv6_split "$1" || return 1
		[ "$_n" -eq 8 ] || return 1
		_groups=$_g
		;;
	esac
}

# ipv6_split PART: set _g to the colon-separated groups of PART, space-separated, and _n to
# their number; fail unless each is 1-4 hex digits. An empty PART has no group.
ipv6_split() {
	_n=0
	_g=''
	[ -n "$1" ] || return 0
	_rest=$1:
	while [ -n "$_rest" ]; do
		_part=${_rest%%:*}
		_rest=${_rest#*:}
		case $_part in
		'' | ?????* | *[!0-9A-Fa-f]*) return 1 ;;
		esac
		_n=$((_n + 1))
		_g="$_g $_part"
	done
}

# is_cidr6 VALUE: VALUE is ADDR/LEN with an IPv6 ADDR and LEN 0-128; sets _groups.
is_cidr6() {
	case $1 in
	*/*) ;;
	*) return 1 ;;
	esac
	ipv6_groups "${1%/*}" || return 1
	is_dec "${1#*/}" 3 || return 1
	[ "${1#*/}" -le 128 ]
}

# host_bits_zero6 LEN: no bit of the eight groups in _groups beyond the first LEN is set.
host_bits_zero6() {
	_bits=$1
	for _part in $_groups; do
		if [ "$_bits" -ge 16 ]; then
			_bits=$((_bits - 16))
			continue
		fi
		[ $((0x$_part % (1 << (16 - _bits)))) -eq 0 ] || return 1
		_bits=0
	done
}

# host_bits_zero ADDR LEN: no bit of ADDR beyond the first LEN is set (ADDR is the network
# address of ADDR/LEN). Works octet by octet, so no arithmetic exceeds 8 bits.
host_bits_zero() {
	_rest=$1.
	_bits=$2
	while [ -n "$_rest" ]; do
		_part=${_rest%%.*}
		_rest=${_rest#*.}
		if [ "$_bits" -ge 8 ]; then
			_bits=$((_bits - 8))
			continue
		fi
		[ $((_part % (1 << (8 - _bits)))) -eq 0 ] || return 1
		_bits=0
	done
}

# check_key KEY VALUE LINE: validate the value of one of the four keys we use.
check_key() {
	case $1 in
	FLANNEL_NETWORK)
		if ! is_cidr "$2" || ! host_bits_zero "${2%/*}" "${2#*/}"; then
			die "$flannel_env:$3: malformed FLANNEL_NETWORK '$2' (want a network address in CIDR notation, e.g. 10.244.0.0/16)"
		fi
		;;
	FLANNEL_SUBNET)
		if ! is_cidr "$2"; then
			die "$flannel_env:$3: malformed FLANNEL_SUBNET '$2' (want ADDRESS/LENGTH, e.g. 10.244.5.1/24)"
		fi
		;;
	FLANNEL_IPV6_NETWORK)
		if ! is_cidr6 "$2" || ! host_bits_zero6 "${2#*/}"; then
			die "$flannel_env:$3: malformed FLANNEL_IPV6_NETWORK '$2' (want an IPv6 network address in CIDR notation, e.g. fd00:10::/56)"
		fi
		;;
	FLANNEL_IPV6_SUBNET)
		if ! is_cidr6 "$2"; then
			die "$flannel_env:$3: malformed FLANNEL_IPV6_SUBNET '$2' (want IPV6-ADDRESS/LENGTH, e.g. fd00:10:0:5::1/64)"
		fi
		;;
	FLANNEL_MTU)
		if ! is_dec "$2" 5 || [ "$2" -lt 68 ] || [ "$2" -gt 65535 ]; then
			die "$flannel_env:$3: malformed FLANNEL_MTU '$2' (want an integer 68-65535)"
		fi
		;;
	FLANNEL_IPMASQ)
		case $2 in
		true | false) ;;
		*) die "$flannel_env:$3: invalid value of FLANNEL_IPMASQ: '$2' (want true or false)" ;;
		esac
		;;
	esac
}

flannel_env=/run/flannel/subnet.env
docker_env=/run/docker_opts.env
combined_opts_key=DOCKER_OPTS
indiv_opts=false
combined_opts=false
ipmasq=true
ipv6=false

while getopts ':f:d:icmk:6h' opt; do
	case $opt in
	f) flannel_env=$OPTARG ;;
	d) docker_env=$OPTARG ;;
	i) indiv_opts=true ;;
	c) combined_opts=true ;;
	m) ipmasq=false ;;
	k) combined_opts_key=$OPTARG ;;
	6) ipv6=true ;;
	h)
		usage
		exit 0
		;;
	:) usage_error "option -$OPTARG needs an argument" ;;
	*) usage_error "unknown option -$OPTARG" ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage_error "unexpected argument '$1'"
[ -n "$flannel_env" ] || usage_error "-f needs a file name"
case $combined_opts_key in
'' | [0-9]* | *[!A-Za-z0-9_]*) usage_error "-k '$combined_opts_key' is not a valid variable name" ;;
esac

if [ "$indiv_opts" = false ] && [ "$combined_opts" = false ]; then
	indiv_opts=true
	combined_opts=true
fi

case $docker_env in
'' | */) usage_error "-d '$docker_env' is not a file name" ;;
*/*) out_dir=${docker_env%/*} ;;
*) out_dir=. ;;
esac
[ -n "$out_dir" ] || out_dir=/
out_base=${docker_env##*/}

# Read the subnet file as data, one KEY=value line at a time.
[ -e "$flannel_env" ] || die "subnet file $flannel_env does not exist (is weftd running?)"
[ -f "$flannel_env" ] || die "subnet file $flannel_env is not a regular file"
[ -r "$flannel_env" ] || die "subnet file $flannel_env is not readable"

cr=$(printf '\r')
blanks=$(printf ' \t')
network='' subnet='' network6='' subnet6='' mtu='' masq=''
lineno=0
# read with the default IFS trims leading and trailing blanks; the last line may lack "\n".
# A CRLF line ending is accepted too (the blanks before the CR are trimmed after it).
while read -r line || [ -n "$line" ]; do
	lineno=$((lineno + 1))
	line=${line%"$cr"}
	line=${line%"${line##*[!"$blanks"]}"}
	case $line in
	'' | '#'*) continue ;;
	*=*) ;;
	*) die "$flannel_env:$lineno: line is not KEY=value: '$line'" ;;
	esac
	key=${line%%=*}
	value=${line#*=}
	check_key "$key" "$value" "$lineno"
	case $key in
	FLANNEL_NETWORK) network=$value ;;
	FLANNEL_SUBNET) subnet=$value ;;
	FLANNEL_IPV6_NETWORK) network6=$value ;;
	FLANNEL_IPV6_SUBNET) subnet6=$value ;;
	FLANNEL_MTU) mtu=$value ;;
	FLANNEL_IPMASQ) masq=$value ;;
	esac
done <"$flannel_env"

# A family is its two keys together; an IPv4-only file (the usual one) has no IPv6 pair,
# an IPv6-only network's file no IPv4 pair.
if [ -z "$network$subnet" ] && [ -z "$network6$subnet6" ]; then
	die "subnet file $flannel_env has no FLANNEL_NETWORK (nor FLANNEL_IPV6_NETWORK)"
fi
required="FLANNEL_MTU:$mtu FLANNEL_IPMASQ:$masq"
[ -z "$network$subnet" ] || required="FLANNEL_NETWORK:$network FLANNEL_SUBNET:$subnet $required"
[ -z "$network6$subnet6" ] || required="$required FLANNEL_IPV6_NETWORK:$network6 FLANNEL_IPV6_SUBNET:$subnet6"
for pair in $required; do
	[ -n "${pair#*:}" ] || die "subnet file $flannel_env has no ${pair%%:*}"
done

opt_bip=''
if [ -n "$subnet" ]; then
	opt_bip="--bip=$subnet"
else
	printf '%s: note: subnet file %s has no FLANNEL_SUBNET (an IPv6-only network): no --bip\n' "$prog" "$flannel_env" >&2
fi
opt_ipv6=''
if [ "$ipv6" = true ] && [ -n "$subnet6" ]; then
	opt_ipv6="--ipv6 --fixed-cidr-v6=$subnet6"
fi
opt_mtu="--mtu=$mtu"
opt_ipmasq=''
if [ "$ipmasq" = true ]; then
	# The daemon masquerades pod traffic itself when FLANNEL_IPMASQ=true, so Docker must not.
	if [ "$masq" = true ]; then
		opt_ipmasq=--ip-masq=false
	else
		opt_ipmasq=--ip-masq=true
	fi
fi

# Like flannel's script, start the combined options from the variable's current value.
eval "docker_opts=\${$combined_opts_key-}"
nl='
'
case $docker_opts in
*\"* | *\\* | *\$* | *\`* | *"$nl"*) die "\$$combined_opts_key in the environment contains a quote, backslash, dollar, backquote or newline: '$docker_opts'" ;;
esac
[ -z "$docker_opts" ] || docker_opts="$docker_opts "

# Variables in flannel's order: the ones made here (BIP unless IPv6-only, IPMASQ unless -m,
# IPV6 with -6, MTU) and every DOCKER_OPT_* variable of the environment, sorted by name in
# byte order (as bash's variable listing that flannel's script walks), each also appended
# to the combined options after a space. awk's ENVIRON gives the names (no listing of values is parsed); a name is only
# letters, digits and underscores, so the eval below expands the variable and nothing else.
names=$(
	{
		printf '%s\n' DOCKER_OPT_MTU
		[ -z "$opt_bip" ] || printf '%s\n' DOCKER_OPT_BIP
		[ -z "$opt_ipmasq" ] || printf '%s\n' DOCKER_OPT_IPMASQ
		[ -z "$opt_ipv6" ] || printf '%s\n' DOCKER_OPT_IPV6
		awk 'BEGIN { for (k in ENVIRON) if (k ~ /^DOCKER_OPT_[A-Za-z0-9_]+$/) print k }'
	} | LC_ALL=C sort -u
)
output=''
for name in $names; do
	case $name in
	DOCKER_OPT_BIP) value=$opt_bip ;;
	DOCKER_OPT_MTU) value=$opt_mtu ;;
	DOCKER_OPT_IPMASQ) value=$opt_ipmasq ;;
	DOCKER_OPT_IPV6) value=$opt_ipv6 ;;
	*) value='' ;;
	esac
	if [ -z "$value" ]; then
		case $name in
		DOCKER_OPT_*[!A-Za-z0-9_]*) die "bad variable name '$name'" ;;
		DOCKER_OPT_?*) eval "value=\${$name-}" ;;
		*) die "bad variable name '$name'" ;;
		esac
		case $value in
		*\"* | *\\* | *\$* | *\`* | *"$nl"*) die "\$$name in the environment contains a quote, backslash, dollar, backquote or newline: '$value'" ;;
		esac
	fi
	if [ "$indiv_opts" = true ]; then
		output="${output}$name=\"$value\"
"
	fi
	docker_opts="$docker_opts $value"
done
if [ "$combined_opts" = true ]; then
	output="${output}$combined_opts_key=\"$docker_opts\"
"
fi

[ -d "$out_dir" ] || die "directory $out_dir of $docker_env does not exist"
tmp=$(mktemp "$out_dir/.$out_base.XXXXXX") || die "cannot create a temporary file in $out_dir"
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
printf '%s' "$output" >"$tmp" || die "cannot write $tmp"
chmod 0644 "$tmp" || die "cannot chmod $tmp"
mv -f "$tmp" "$docker_env" || die "cannot move $tmp to $docker_env"
