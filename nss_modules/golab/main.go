// golab: an NSS module in Go, built with -buildmode=c-shared, shaped like the old libnss_stns.
//
// Every lookup is answered by a goroutine while the caller waits on a channel with a
// timeout, the way a network client waits for its server. That wait parks the calling
// thread inside the Go runtime, which is what freezes forever in a forked child: fork
// copies one thread, and the runtime's other threads (and its "initialised" flag's
// promise) do not come along. A plain table lookup would not show the bug.
package main

/*
#include <errno.h>
#include <nss.h>
#include <stdlib.h>
#include "fill.h"
*/
import "C"

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

const dbPath = "/etc/golab.db"

type user struct {
	name, gecos, home, shell string
	uid, gid                 uint32
}

type group struct {
	name    string
	gid     uint32
	members []string
}

type db struct {
	users  []user
	groups []group
}

var errNotFound = errors.New("not found")

// fetch reads the database on a goroutine and waits for it with a timeout, as a client of
// a remote directory would.
func fetch() (*db, error) {
	type reply struct {
		d   *db
		err error
	}
	ch := make(chan reply, 1)
	go func() {
		d, err := load()
		ch <- reply{d, err}
	}()
	select {
	case r := <-ch:
		return r.d, r.err
	case <-time.After(5 * time.Second):
		return nil, errors.New("timeout")
	}
}

func load() (*db, error) {
	f, err := os.Open(dbPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &db{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		switch {
		case fields[0] == "passwd" && len(fields) == 7:
			uid, _ := strconv.ParseUint(fields[2], 10, 32)
			gid, _ := strconv.ParseUint(fields[3], 10, 32)
			d.users = append(d.users, user{fields[1], fields[4], fields[5], fields[6], uint32(uid), uint32(gid)})
		case fields[0] == "group" && len(fields) == 4:
			gid, _ := strconv.ParseUint(fields[2], 10, 32)
			var members []string
			if fields[3] != "" {
				members = strings.Split(fields[3], ",")
			}
			d.groups = append(d.groups, group{fields[1], uint32(gid), members})
		}
	}
	return d, sc.Err()
}

func findUser(match func(user) bool) (user, error) {
	d, err := fetch()
	if err != nil {
		return user{}, err
	}
	for _, u := range d.users {
		if match(u) {
			return u, nil
		}
	}
	return user{}, errNotFound
}

func findGroup(match func(group) bool) (group, error) {
	d, err := fetch()
	if err != nil {
		return group{}, err
	}
	for _, g := range d.groups {
		if match(g) {
			return g, nil
		}
	}
	return group{}, errNotFound
}

func status(err error, errnop *C.int) C.enum_nss_status {
	if errors.Is(err, errNotFound) {
		*errnop = C.ENOENT
		return C.NSS_STATUS_NOTFOUND
	}
	*errnop = C.EAGAIN
	return C.NSS_STATUS_UNAVAIL
}

func fillPasswd(u user, pw *C.struct_passwd, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	strs := []*C.char{C.CString(u.name), C.CString(u.gecos), C.CString(u.home), C.CString(u.shell)}
	defer func() {
		for _, s := range strs {
			C.free(unsafe.Pointer(s))
		}
	}()
	if rc := C.golab_fill_passwd(pw, buf, buflen, strs[0], C.uint(u.uid), C.uint(u.gid), strs[1], strs[2], strs[3]); rc != 0 {
		*errnop = rc
		return C.NSS_STATUS_TRYAGAIN
	}
	return C.NSS_STATUS_SUCCESS
}

func fillGroup(g group, gr *C.struct_group, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	name := C.CString(g.name)
	defer C.free(unsafe.Pointer(name))
	n := len(g.members)
	members := (*[1 << 20]*C.char)(C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(name))))[: n+1 : n+1]
	defer C.free(unsafe.Pointer(&members[0]))
	for i, m := range g.members {
		members[i] = C.CString(m)
		defer C.free(unsafe.Pointer(members[i]))
	}
	if rc := C.golab_fill_group(gr, buf, buflen, name, C.uint(g.gid), &members[0], C.size_t(n)); rc != 0 {
		*errnop = rc
		return C.NSS_STATUS_TRYAGAIN
	}
	return C.NSS_STATUS_SUCCESS
}

//export _nss_golab_getpwnam_r
func _nss_golab_getpwnam_r(name *C.char, pw *C.struct_passwd, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	want := C.GoString(name)
	u, err := findUser(func(u user) bool { return u.name == want })
	if err != nil {
		return status(err, errnop)
	}
	return fillPasswd(u, pw, buf, buflen, errnop)
}

//export _nss_golab_getpwuid_r
func _nss_golab_getpwuid_r(uid C.uid_t, pw *C.struct_passwd, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	u, err := findUser(func(u user) bool { return u.uid == uint32(uid) })
	if err != nil {
		return status(err, errnop)
	}
	return fillPasswd(u, pw, buf, buflen, errnop)
}

//export _nss_golab_getgrnam_r
func _nss_golab_getgrnam_r(name *C.char, gr *C.struct_group, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	want := C.GoString(name)
	g, err := findGroup(func(g group) bool { return g.name == want })
	if err != nil {
		return status(err, errnop)
	}
	return fillGroup(g, gr, buf, buflen, errnop)
}

//export _nss_golab_getgrgid_r
func _nss_golab_getgrgid_r(gid C.gid_t, gr *C.struct_group, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	g, err := findGroup(func(g group) bool { return g.gid == uint32(gid) })
	if err != nil {
		return status(err, errnop)
	}
	return fillGroup(g, gr, buf, buflen, errnop)
}

// Enumeration keeps a snapshot and a cursor; the cursor only moves once an entry fitted.
var (
	enumMu          sync.Mutex
	pwList          []user
	grList          []group
	pwNext, grNext int
)

//export _nss_golab_setpwent
func _nss_golab_setpwent(stayopen C.int) C.enum_nss_status {
	d, err := fetch()
	if err != nil {
		return C.NSS_STATUS_UNAVAIL
	}
	enumMu.Lock()
	defer enumMu.Unlock()
	pwList, pwNext = d.users, 0
	return C.NSS_STATUS_SUCCESS
}

//export _nss_golab_getpwent_r
func _nss_golab_getpwent_r(pw *C.struct_passwd, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	enumMu.Lock()
	defer enumMu.Unlock()
	if pwNext >= len(pwList) {
		*errnop = C.ENOENT
		return C.NSS_STATUS_NOTFOUND
	}
	st := fillPasswd(pwList[pwNext], pw, buf, buflen, errnop)
	if st == C.NSS_STATUS_SUCCESS {
		pwNext++
	}
	return st
}

//export _nss_golab_endpwent
func _nss_golab_endpwent() C.enum_nss_status {
	enumMu.Lock()
	defer enumMu.Unlock()
	pwList, pwNext = nil, 0
	return C.NSS_STATUS_SUCCESS
}

//export _nss_golab_setgrent
func _nss_golab_setgrent(stayopen C.int) C.enum_nss_status {
	d, err := fetch()
	if err != nil {
		return C.NSS_STATUS_UNAVAIL
	}
	enumMu.Lock()
	defer enumMu.Unlock()
	grList, grNext = d.groups, 0
	return C.NSS_STATUS_SUCCESS
}

//export _nss_golab_getgrent_r
func _nss_golab_getgrent_r(gr *C.struct_group, buf *C.char, buflen C.size_t, errnop *C.int) C.enum_nss_status {
	enumMu.Lock()
	defer enumMu.Unlock()
	if grNext >= len(grList) {
		*errnop = C.ENOENT
		return C.NSS_STATUS_NOTFOUND
	}
	st := fillGroup(grList[grNext], gr, buf, buflen, errnop)
	if st == C.NSS_STATUS_SUCCESS {
		grNext++
	}
	return st
}

//export _nss_golab_endgrent
func _nss_golab_endgrent() C.enum_nss_status {
	enumMu.Lock()
	defer enumMu.Unlock()
	grList, grNext = nil, 0
	return C.NSS_STATUS_SUCCESS
}

//export _nss_golab_initgroups_dyn
func _nss_golab_initgroups_dyn(name *C.char, skip C.gid_t, start *C.long, size *C.long, groupsp **C.gid_t, limit C.long, errnop *C.int) C.enum_nss_status {
	want := C.GoString(name)
	d, err := fetch()
	if err != nil {
		return status(err, errnop)
	}
	for _, g := range d.groups {
		if g.gid == uint32(skip) {
			continue
		}
		for _, m := range g.members {
			if m == want {
				if rc := C.golab_add_group(C.uint(g.gid), start, size, groupsp, limit); rc != 0 {
					*errnop = rc
					return C.NSS_STATUS_TRYAGAIN
				}
				break
			}
		}
	}
	return C.NSS_STATUS_SUCCESS
}

// init runs once, when the library is loaded: the runtime starts from the loader's
// constructor (_rt0_amd64_lib) and never again, not in a forked child either. With
// GOLAB_INIT_LOG set it records the pid, as libnss_stns logged "call init" to syslog;
// `nsslab reproduce stns` reads it.
func init() {
	if path := os.Getenv("GOLAB_INIT_LOG"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0); err == nil {
			fmt.Fprintf(f, "golab: init in pid %d\n", os.Getpid())
			f.Close()
		}
	}
}

func main() {}
