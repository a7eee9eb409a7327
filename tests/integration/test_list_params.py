#!/usr/bin/env python3
"""List parameters ("int_list", "string_list"): ?ids=1,2,3 and ?ids=1&ids=2 give the same list,
bound to a SQL call as one Postgres array against a real server; bad items, too many items, an
absent list and a default; and config errors where a list cannot go."""
import json as jsonlib

from harness import call, endpoint, main
from test_cache import check_config_error
from test_postgres import PgTestCase, sql_call

IDS = sql_call('SELECT coalesce(json_agg(x ORDER BY x), \'[]\')::text AS ids '
               'FROM unnest($1::bigint[]) AS x', args=['{query.ids}'], row='one')
TAGS = sql_call('SELECT coalesce(json_agg(t ORDER BY t), \'[]\')::text AS tags '
                'FROM unnest($1::text[]) AS t', args=['{query.tags}'], row='one')


class ListParamsTest(PgTestCase):

    def start(self):
        eps = [endpoint('/ids', {'q': IDS}, params={'query.ids': {'type': 'int_list',
                                                                  'max_items': 5}}),
               endpoint('/tags', {'q': TAGS}, params={'query.tags': 'string_list'}),
               endpoint('/dflt', {'q': IDS},
                        params={'query.ids': {'type': 'int_list', 'required': False,
                                              'default': '4,5'}})]
        return self.start_pg_gatherd(eps)

    def ids(self, gd, query, status=200):
        st, _, body, _ = gd.get('/ids?' + query)
        self.assertEqual(st, status, body)
        doc = jsonlib.loads(body)
        return jsonlib.loads(doc['q']['ids']) if status == 200 else doc

    def test_both_syntaxes_give_one_array(self):
        gd = self.start()
        self.assertEqual(self.ids(gd, 'ids=3,1,2'), [1, 2, 3])
        self.assertEqual(self.ids(gd, 'ids=3&ids=1&ids=2'), [1, 2, 3])
        self.assertEqual(self.ids(gd, 'ids=3,1&other=x&ids=-7'), [-7, 1, 3])
        self.assertEqual(self.ids(gd, 'ids='), [])
        self.assertEqual(self.ids(gd, 'ids=9223372036854775807'), [9223372036854775807])

    def test_strings_are_bound_as_text_whatever_they_hold(self):
        gd = self.start()
        # a quote, a backslash, braces and SQL text: values, never syntax
        st, _, body, _ = gd.get('/tags?tags=a%22b,c%5Cd&tags=%7Bx%7D,%27);DROP%20TABLE%20t;--')
        self.assertEqual(st, 200, body)
        self.assertEqual(jsonlib.loads(jsonlib.loads(body)['q']['tags']),
                         sorted(['a"b', 'c\\d', '{x}', "');DROP TABLE t;--"]))

    def test_bad_items_and_too_many_are_the_clients_error(self):
        gd = self.start()
        for query, message in (('ids=1,x', 'must be a list of integers'),
                               ('ids=1,,2', 'has an empty item'),
                               ('ids=1,2,3,4,5,6', 'has more than 5 items'),
                               ('ids=1&ids=2,3,4&ids=5,6', 'has more than 5 items'),
                               ('ids=99999999999999999999', 'must be a list of integers')):
            doc = self.ids(gd, query, status=400)
            self.assertEqual(doc['error'], 'invalid_parameter')
            self.assertIn(message, doc['message'])
        self.assertEqual(self.ids(gd, ''), [])  # absent, optional: an empty array, not NULL

    def test_absent_optional_list_takes_its_default(self):
        gd = self.start()
        st, _, body, _ = gd.get('/dflt')
        self.assertEqual(st, 200, body)
        self.assertEqual(jsonlib.loads(jsonlib.loads(body)['q']['ids']), [4, 5])
        st, _, body, _ = gd.get('/dflt?ids=8')
        self.assertEqual(jsonlib.loads(jsonlib.loads(body)['q']['ids']), [8])

    def check_error(self, eps, expected):
        check_config_error(self, self.pg_config(eps), expected)

    def test_config_errors_where_a_list_cannot_go(self):
        lst = {'query.ids': 'int_list'}
        self.check_error([endpoint('/x', {'c': call('s', '/users/{query.ids}')}, params=lst)],
                         'endpoints[0].calls.c.path: {query.ids} is a list parameter: it can only '
                         'be a whole SQL argument')
        self.check_error([endpoint('/x', {'q': sql_call('SELECT $1::text AS a',
                                                        args=['x{query.ids}'])}, params=lst)],
                         'endpoints[0].calls.q.args[0]: a list parameter must be the whole argument')
        self.check_error([endpoint('/x', {'q': IDS}, params=lst, response={'a': '{query.ids}'})],
                         '{query.ids} is a list parameter')
        self.check_error([endpoint('/x', {'q': IDS},
                                   params={'query.ids': {'type': 'string', 'max_items': 3}})],
                         'endpoints[0].params["query.ids"].max_items: only a list parameter')
        self.check_error([endpoint('/x', {'q': IDS}, params={'query.ids': 'int_list',
                                                             'header.x-ids': 'int_list'})],
                         'a list parameter comes from the query string')
        self.check_error([endpoint('/x', {'q': IDS}, params={
            'query.ids': {'type': 'int_list', 'required': False, 'default': '1,a'}})],
                         'endpoints[0].params["query.ids"].default: parameter "query.ids" must '
                         'be a list of integers')
        self.check_error([endpoint('/x', {'q': IDS}, params={'query.ids': 'list'})],
                         '"int_list" or "string_list"')


if __name__ == '__main__':
    main()
